"""`semanticdraw watch`: the loop driven by real saves in a temporary folder, followed through its events."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli.cli.app import app
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.loader import load_scene
from semanticdraw_cli.watch import Event, WatchLoop, WatchOptions
from semanticdraw_cli.watched import scene_inputs
from drawings import blob, layer, make_ora, save_ora
from watch_session import SCENE, WAIT, Session, save, write_mask

SCENES = Path(__file__).resolve().parent.parent / "scenes"

pytestmark = pytest.mark.slow


@pytest.fixture()
def scene_file(tmp_path) -> Path:
    write_mask(tmp_path / "fox.png", 30)
    path = tmp_path / "scene.yaml"
    path.write_text(SCENE)
    return path


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


@pytest.fixture()
def session(scene_file, renderer):
    sessions = []

    def start(**options) -> Session:
        sessions.append(Session(scene_file, renderer, **options))
        return sessions[-1]

    yield start
    for running in sessions:
        running.close()


def test_a_prompt_edit_re_encodes_only_that_prompt(scene_file, session):
    watch = session()
    first = watch.ready()
    assert first.outputs[:2] == (watch.out / "scene-latest.png", watch.out / "scene-latest.json")
    assert (watch.out / "scene-layout.png").is_file()
    save(scene_file, SCENE.replace("a tall tree", "a short tree"))
    second = watch.wait("rendered", 2)
    assert second.recomputed == {"text": 1}
    assert second.files == (scene_file,)
    assert watch.kinds(2) == ["started", "layout", "step", "step", "rendered"]
    assert {"scene", "layout", "masks", "encode", "denoise", "decode", "write", "total"} <= set(second.seconds)
    report = (watch.out / "scene-latest.json").read_text()
    assert '"render": 2' in report and "a short tree" in (watch.out / "scene-latest.png").read_bytes().decode("latin-1")


def test_a_mask_edit_re_rasterizes_only_that_mask_and_new_masks_are_watched(scene_file, session):
    watch = session()
    watch.ready()
    write_mask(scene_file.parent / "fox.png", 20)
    second = watch.wait("rendered", 2)
    assert second.files == (scene_file.parent / "fox.png",)
    assert second.recomputed.get("mask") == 1 and "text" not in second.recomputed
    # a scene edit that names a new mask file: that file is watched from then on
    write_mask(scene_file.parent / "tree.png", 40)
    save(scene_file, SCENE.replace("{rect: [32, 0, 32, 64]}", "tree.png"))
    watch.wait("rendered", 3)
    write_mask(scene_file.parent / "tree.png", 50)
    fourth = watch.wait("rendered", 4)
    assert fourth.files == (scene_file.parent / "tree.png",) and fourth.recomputed.get("mask") == 1


def test_an_invalid_save_keeps_the_loop_and_the_last_image(scene_file, session):
    watch = session(out=scene_file.parent)  # the outputs beside the scene, as with the default -o .
    watch.ready()
    latest = watch.out / "scene-latest.png"
    image = latest.read_bytes()
    save(scene_file, SCENE + "  - {name: sun, prompt: [\n")  # half-typed
    invalid = watch.wait("invalid")
    assert invalid.problems and all(str(scene_file) in problem for problem in invalid.problems)
    assert latest.read_bytes() == image
    save(scene_file, SCENE.replace("fox.png", "cat.png"))  # names a file that is not there yet
    assert "cat.png" in " ".join(watch.wait("invalid").problems)
    (watch.out / "scene-0007.png").write_bytes(image)  # a file named as the loop's own outputs: no reload
    write_mask(scene_file.parent / "cat.png", 40)  # the next save that makes it valid renders
    assert watch.wait("rendered", 2).files == (scene_file.parent / "cat.png", scene_file)  # since the last render
    assert latest.read_bytes() != image
    noticed = [file.name for event in watch.seen if event.kind == "noticed" for file in event.files]
    assert "cat.png" in noticed and not {"scene-0007.png", "scene-layout.png", "scene-latest.png"} & set(noticed)


def test_a_change_during_a_render_abandons_it(scene_file, session):
    release = threading.Event()

    def hold_first_step(event: Event) -> None:
        if event.kind == "step" and event.render == 2 and event.step == 1:
            release.wait(timeout=WAIT)

    watch = session()
    watch.loop.listen(hold_first_step)
    watch.ready()
    save(scene_file, SCENE.replace("a tall tree", "a young tree"))
    watch.wait("step", 2)  # render 2 is held inside its first step
    save(scene_file, SCENE.replace("a tall tree", "an old tree"))
    while scene_file not in watch.wait("noticed").files:
        pass
    release.set()
    abandoned = watch.wait("abandoned", 2)
    assert (abandoned.step, abandoned.steps) == (1, 2)
    third = watch.wait("rendered", 3)
    assert watch.kinds(2) == ["started", "layout", "step", "abandoned"]
    assert third.files == (scene_file,) and third.recomputed == {"text": 1}
    assert "an old tree" in (watch.out / "scene-latest.png").read_bytes().decode("latin-1")


def test_a_touch_without_new_content_renders_nothing(scene_file, session):
    watch = session()
    watch.ready()
    save(scene_file, SCENE)  # the same bytes again
    while scene_file not in watch.wait("noticed").files:
        pass
    save(scene_file, SCENE.replace("a tall tree", "a birch tree"))
    assert watch.wait("rendered").render == 2  # the next render is the edit's, not the touch's


def test_a_file_written_while_it_is_read_is_read_again_before_rendering(scene_file, session, monkeypatch):
    """An editor saving in place can still be writing when the loop reads: render what it ends with, once."""
    from semanticdraw_cli import watch as watch_module

    real_load = watch_module.load_scene
    finishing = [SCENE.replace("a tall tree", "a golden tree")]

    def load_while_the_editor_finishes(*args, **kwargs):
        if finishing:
            scene_file.write_text(finishing.pop())  # in place, after the loop hashed the file
        return real_load(*args, **kwargs)

    watch = session()
    watch.ready()
    monkeypatch.setattr(watch_module, "load_scene", load_while_the_editor_finishes)
    save(scene_file, SCENE.replace("a tall tree", "a stone tree"))
    second = watch.wait("rendered", 2)
    assert second.files == (scene_file,) and second.recomputed == {"text": 1}
    assert "a golden tree" in (watch.out / "scene-latest.png").read_bytes().decode("latin-1")
    write_mask(scene_file.parent / "fox.png", 40)
    # the write seen during render 2's read was already rendered: the next render is the mask's alone
    assert watch.wait("rendered", 3).files == (scene_file.parent / "fox.png",)


def test_keep_and_preview_steps(scene_file, session):
    shown = []

    def look(event: Event) -> None:
        if event.kind == "step" and event.outputs:
            shown.append(np.asarray(Image.open(event.outputs[0])))

    watch = session(keep=True, preview_steps=True)
    watch.loop.listen(look)
    first = watch.ready()
    assert first.outputs[2] == watch.out / "scene-0001.png"
    save(scene_file, SCENE.replace("a tall tree", "a pine tree"))
    second = watch.wait("rendered", 2)
    assert second.outputs[2] == watch.out / "scene-0002.png"
    assert (watch.out / "scene-0002.png").read_bytes() == (watch.out / "scene-latest.png").read_bytes()
    assert len(shown) == 2 and shown[0].shape == (64, 64, 3)  # one preview per render: after step 1 of 2
    assert not np.array_equal(shown[-1], np.asarray(Image.open(watch.out / "scene-latest.png")))


def test_step_previews_come_from_the_preview_decoder_and_the_image_from_the_vae(scene_file, session, renderer):
    """With `model.preview_decoder: tiny-ae` a step's preview is the tiny autoencoder's decode of its x0, not the VAE's;
    NAME-latest.png is bit for bit the render of the scene without the key."""
    scene_file.write_text(SCENE.replace("{checkpoint: tiny}", "{checkpoint: tiny, preview_decoder: tiny-ae}"))
    shown = []

    def look(event: Event) -> None:
        if event.kind == "step" and event.outputs:
            shown.append(np.asarray(Image.open(event.outputs[0])))

    watch = session(listener=look, preview_steps=True)
    watch.ready()
    scene = load_scene(scene_file)
    prepared = renderer.prepare(scene, [scene.sampler.seed])
    steps = renderer.steps(prepared)
    x0 = next(steps).x0[:1]  # (1, C, h, w) step 1's estimate, as the loop had it
    steps.close()
    assert len(shown) == 1 and np.array_equal(shown[0], prepared.adapter.decode_preview(x0, scene.model)[0])
    assert (shown[0] != prepared.adapter.decode(x0)[0]).mean() > 0.5
    without = renderer.render(load_scene(scene_file, ["model.preview_decoder=none"]))[0].image
    assert np.array_equal(np.asarray(Image.open(watch.out / "scene-latest.png")), without)


def test_a_watch_render_equals_semanticdraw_render(scene_file, session):
    watch = session()
    watch.ready()
    save(scene_file, SCENE.replace("a tall tree", "a palm tree"))
    watch.wait("rendered", 2)
    result = CliRunner().invoke(app, ["render", str(scene_file), "-o", str(scene_file.parent / "cli"), "-q",
                                      "--device", "cpu", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    rendered = Image.open(scene_file.parent / "cli" / "scene-3.png")
    watched = Image.open(watch.out / "scene-latest.png")
    assert np.array_equal(np.asarray(rendered), np.asarray(watched))
    assert rendered.text == watched.text  # the same scene and parameters embedded


def test_an_interrupt_during_a_render_leaves_no_partial_files(scene_file, renderer):
    def interrupt(event: Event) -> None:
        if event.kind == "step":
            raise KeyboardInterrupt

    loop = WatchLoop(WatchOptions(scene_file, scene_file.parent / "out"), renderer, [interrupt])
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert sorted(path.name for path in (scene_file.parent / "out").iterdir()) == ["scene-layout.png"]


def test_ctrl_c_exits_130_with_no_partial_files(scene_file):
    out = scene_file.parent / "out"
    command = [sys.executable, "-m", "semanticdraw_cli", "watch", str(scene_file), "-o", str(out), "--device", "cpu"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=scene_file.parent)
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if line.startswith("render 1: first render"):
                break
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=WAIT) == 130, "".join(lines)
        assert "interrupted" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert sorted(path.name for path in out.iterdir()) == ["scene-latest.json", "scene-latest.png", "scene-layout.png"]


def test_a_layered_drawing_and_its_sidecar_are_watched(tmp_path, renderer):
    art = tmp_path / "art.ora"
    make_ora(art, (64, 64), [layer("a red fox", blob((24, 40)), left=4, top=8)])
    (tmp_path / "art.yaml").write_text("model: {checkpoint: tiny}\nsampler: {steps: [0, 25], seed: 3}\n")
    watch = Session(art, renderer)
    try:
        watch.ready()
        save_ora(art, (64, 64), [layer("a red fox", blob((40, 40)), left=4, top=8)])
        second = watch.wait("rendered", 2)
        assert second.files == (art,) and second.recomputed.get("mask") == 1 and "text" not in second.recomputed
        save(tmp_path / "art.yaml", "model: {checkpoint: tiny}\nsampler: {steps: [0, 25], seed: 4}\n")
        assert watch.wait("rendered", 3).files == (tmp_path / "art.yaml",)
    finally:
        watch.close()


def test_watched_files_follow_what_the_scene_reads(scene_file):
    from semanticdraw_cli.scene.loader import load_scene

    folder = scene_file.parent
    Image.new("RGB", (64, 64), "white").save(folder / "paper.png")
    scene_file.write_text(SCENE.replace("background: {prompt: a blue sky}", "background: {image: paper.png}"))
    files = scene_inputs(scene_file, load_scene(scene_file))
    assert {folder / "fox.png", folder / "paper.png", scene_file, folder / "scene.psd", folder / "scene.ora"} <= files
    # a YAML scene that names a drawing under `layers:`
    make_ora(folder / "drawing.ora", (64, 64), [layer("a red fox", blob((24, 40)))])
    (folder / "layered.yaml").write_text("layers: drawing.ora\nmodel: {checkpoint: tiny}\n")
    assert folder / "drawing.ora" in scene_inputs(folder / "layered.yaml", load_scene(folder / "layered.yaml"))


def test_watch_refuses_a_missing_scene_and_a_bad_option(tmp_path):
    result = CliRunner().invoke(app, ["watch", str(tmp_path / "nothing.yaml"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "file not found" in result.output
    assert not (tmp_path / "out").exists()  # refused before anything is written
    result = CliRunner().invoke(app, ["watch", str(tmp_path / "nothing.yaml"), "--dtype", "float8"])
    assert result.exit_code == 2 and "--dtype" in result.output
    result = CliRunner().invoke(app, ["watch", "--serve", str(tmp_path / "nothing.yaml"), "--dtype", "float8"])
    assert result.exit_code == 2 and "--dtype" in result.output  # a bare --serve takes no argument that is not a port


def test_watch_refuses_at_the_start_an_output_that_is_the_scenes_label_map(tmp_path):
    for name in ("palette.yaml", "palette-layout.png"):  # the example scene's label map is named as watch's layout
        (tmp_path / name).write_bytes((SCENES / name).read_bytes())
    label_map, scene = tmp_path / "palette-layout.png", tmp_path / "palette.yaml"
    result = CliRunner().invoke(app, ["watch", str(scene), "--model", "tiny", "-o", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"{label_map}: the output would overwrite the label map of region 'hills' in {scene}" in result.output
    assert label_map.read_bytes() == (SCENES / "palette-layout.png").read_bytes()
    assert not (tmp_path / "palette-latest.png").exists()


def test_a_save_that_makes_an_output_an_input_is_refused_and_the_file_kept(scene_file, session):
    watch = session(out=scene_file.parent)
    watch.ready()
    drawn = scene_file.parent / "scene-layout.png"  # the user draws a mask over the layout, then names it
    write_mask(drawn, 50)
    before = drawn.read_bytes()
    save(scene_file, SCENE.replace("fox.png", "scene-layout.png"))
    while (event := watch.events.get(timeout=WAIT)).kind not in ("invalid", "rendered", "failed"):
        pass
    assert event.kind == "invalid", event
    assert f"{drawn}: the output would overwrite the mask of region 'fox' in {scene_file}" in event.problems[0]
    assert drawn.read_bytes() == before
    save(scene_file, SCENE)  # named back: the loop goes on (nothing changed since the last render)
    assert watch.wait("rendered", 2).files == ()


def test_a_region_smaller_than_the_latent_grid_renders_and_the_session_goes_on(tmp_path, renderer):
    dot = "canvas: {width: 64, height: 64}\nmodel: {checkpoint: tiny}\nsampler: {steps: [0, 25], seed: 3}\n" \
          "regions:\n  - {name: dot, prompt: a dot, mask: {rect: [14, 14, 4, 4]}}\n"
    path = tmp_path / "dot.yaml"
    path.write_text(dot)
    watch = Session(path, renderer)
    try:
        first = watch.ready()
        report = json.loads(first.outputs[1].read_text())
        assert report["warnings"][0].startswith("regions[0] (dot): no latent pixel at any step")
        assert first.warnings == (f"{path}: {report['warnings'][0]}",)  # the terminal prints it (test_cli_watch)
        save(path, dot.replace("[14, 14, 4, 4]", "[8, 8, 16, 16]"))
        second = watch.wait("rendered", 2)
        assert "warnings" not in json.loads(second.outputs[1].read_text()) and second.warnings == ()
    finally:
        watch.close()


@pytest.mark.parametrize("gap", ["invalid", "none"])
def test_a_scene_folder_removed_and_made_again_renders_again(tmp_path, renderer, gap):
    folder = tmp_path / "art"
    folder.mkdir()
    write_mask(folder / "fox.png", 30)
    (folder / "scene.yaml").write_text(SCENE)
    watch = Session(folder / "scene.yaml", renderer, out=tmp_path / "out")
    try:
        watch.ready()
        shutil.rmtree(folder)
        if gap == "invalid":  # the loop saw the folder gone before it came back
            assert "file not found" in watch.wait("invalid").problems[0]
        folder.mkdir()
        write_mask(folder / "fox.png", 40)
        (folder / "scene.yaml").write_text(SCENE.replace("a tall tree", "a short tree"))
        assert watch.wait("rendered", 2).files
        save(folder / "scene.yaml", SCENE)  # and the folder made again is watched from then on
        assert watch.wait("rendered", 3).files == (folder / "scene.yaml",)
    finally:
        watch.close()


def test_watched_files_are_hashed_within_the_limit_of_their_kind(tmp_path, monkeypatch):
    from semanticdraw_cli import defaults
    from semanticdraw_cli.watched import contents

    monkeypatch.setattr(defaults, "MAX_SCENE_BYTES", 100)
    (tmp_path / "big.yaml").write_text("x" * 101)
    (tmp_path / "small.yaml").write_text("x" * 100)
    (tmp_path / "pagemap.yaml").symlink_to("/proc/self/pagemap")  # size 0, reads for gigabytes
    found = contents([tmp_path / "big.yaml", tmp_path / "small.yaml", tmp_path / "pagemap.yaml"])
    assert found[tmp_path / "big.yaml"] == "refused: is 101 bytes; a scene file may have at most 100"
    assert found[tmp_path / "pagemap.yaml"] == "refused: holds more than 100 bytes, the limit for a scene file"
    assert len(found[tmp_path / "small.yaml"]) == 32


def test_a_model_path_typed_on_the_command_line_is_read_from_the_current_folder(tmp_path, monkeypatch):
    """`watch --model ./dir` loads what `render --model ./dir` loads: every reload reads the resolved path."""
    from semanticdraw_cli import watch as watch_module
    from semanticdraw_cli.scene.loader import load_scene

    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "scenes").mkdir()
    write_mask(tmp_path / "scenes" / "fox.png", 30)
    (tmp_path / "scenes" / "scene.yaml").write_text(SCENE)
    loaded = []

    class FirstLoadOnly:  # the loop's load, without the render
        def __init__(self, options, renderer, listeners):
            self.options = options

        def run(self):
            loaded.append(load_scene(self.options.scene, self.options.overrides))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(watch_module, "WatchLoop", FirstLoadOnly)
    result = CliRunner().invoke(app, ["watch", "scenes/scene.yaml", "--model", "./models/mine", "-o", "out"])
    assert result.exit_code == 0, result.output
    assert loaded[0].model.checkpoint == str(tmp_path / "models" / "mine")


def test_a_hires_scene_shows_its_upscaled_first_pass_then_renders_as_render_does(tmp_path, renderer):
    """Pass 1 upscaled replaces NAME-latest.png before pass 2's steps, and is an event; the image is `render`'s."""
    scene = tmp_path / "big.yaml"
    scene.write_text("canvas: {width: 128, height: 96}\nmodel: {checkpoint: tiny}\n"
                     "sampler: {steps: [0, 25], seed: 3, tile: {size: 48, stride: 24}}\n"
                     "hires: {scale: 2, strength: 0.5}\nbackground: {prompt: a blue sky}\n"
                     "regions:\n  - {prompt: a red fox, mask: {rect: [16, 16, 56, 48]}}\n")
    latest = tmp_path / "out" / "big-latest.png"
    shown = []  # per step event of render 1: the size of NAME-latest.png then, or None

    def on_event(event) -> None:
        if event.kind in ("step", "first_pass") and event.render == 1:
            shown.append(Image.open(latest).size if latest.exists() else None)

    watch = Session(scene, renderer, listener=on_event)
    try:
        watch.ready()
    finally:
        watch.close()
    assert shown == [None, None, (128, 96), (128, 96)]  # pass 1's two steps, pass 1 shown, pass 2's one step
    assert [kind for kind in watch.kinds(1) if kind != "phase"] == [
        "started", "layout", "step", "step", "first_pass", "step", "rendered"]
    assert next(event for event in watch.seen if event.kind == "first_pass").outputs == (latest,)
    result = CliRunner().invoke(app, ["render", str(scene), "-o", str(tmp_path / "cli"), "-q", "--device", "cpu",
                                      "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cli" / "big-3.png")), np.asarray(Image.open(latest)))


def test_a_reroll_redraws_only_that_region_and_an_unknown_name_is_named(scene_file, session):
    from semanticdraw_cli.render import region_masks
    from semanticdraw_cli.scene.loader import load_scene

    watch = session()
    watch.ready()
    latest = watch.out / "scene-latest.png"
    with Image.open(latest) as image:
        before = np.asarray(image.convert("RGB"))
    watch.loop.reroll(["fox"])
    second = watch.wait("rendered", 2)
    with Image.open(latest) as image:
        after = np.asarray(image.convert("RGB"))
    fox = region_masks(load_scene(scene_file))[0] > 0  # (H, W)
    assert np.array_equal(after[~fox], before[~fox])
    assert (after[fox] != before[fox]).any(axis=-1).mean() > 0.5
    assert "reroll:" in latest.read_bytes().decode("latin-1") and second.recomputed.get("picture") == 1
    watch.loop.reroll(["wolf"])
    problem = watch.wait("invalid")
    assert "'wolf'" in problem.problems[0] and "fox, tree" in problem.problems[0]


def test_the_terminal_keys_reroll_and_explain_themselves():
    from semanticdraw_cli.watch_reroll import read_keys

    asked, said = [], []
    read_keys(["r fox,tree\n", "\n", "x\n"], asked.append, said.append)
    assert asked == [["fox", "tree"]] and len(said) == 1 and "r NAME" in said[0]


def test_prompt_variants_are_picked_as_render_picks_them(scene_file, session):
    from semanticdraw_cli import variants
    from semanticdraw_cli.scene.loader import load_scene

    save(scene_file, SCENE.replace("a tall tree", "'a {tall|short|bent} tree'"))
    watch = session()
    watch.ready()
    picked = variants.picked_scene(load_scene(scene_file), 3).regions[1].prompt
    embedded = (watch.out / "scene-latest.png").read_bytes().decode("latin-1")
    assert "{tall" not in embedded and f"prompt: {picked}" in embedded


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


def lines_picture(path: Path, every: int) -> Path:
    """A 64×64 control picture: white lines every `every` rows on black."""
    picture = np.zeros((64, 64, 3), np.uint8)
    picture[::every] = 255
    Image.fromarray(picture).save(path)
    return path


def test_a_control_picture_edit_renders_once_without_encoding_prompts(scene_file, session):
    """Issue 23: a saved control picture is one render, its prompts from the cache; then a prompt edit is the next."""
    control = lines_picture(scene_file.parent / "edges.png", 8)
    controlled = SCENE + "control: [{model: tiny, image: edges.png}]\n"
    save(scene_file, controlled)
    watch = session()
    watch.ready()
    before = pixels(watch.out / "scene-latest.png")
    lines_picture(control, 5)  # rewritten in place
    second = watch.wait("rendered", 2)
    assert second.files == (control,) and second.recomputed == {"control": 1, "control_source": 1}
    assert (pixels(watch.out / "scene-latest.png") != before).any(axis=-1).mean() > 0.5  # 98 % of the pixels here
    save(scene_file, controlled.replace("a tall tree", "a fir tree"))
    third = watch.wait("rendered", 3)  # the next render is the prompt edit's: the picture's save rendered once
    assert third.files == (scene_file,) and third.recomputed == {"text": 1}


def test_a_reference_picture_edit_re_encodes_only_that_picture(scene_file, session):
    """Issue 23, as for a control picture: a saved reference picture is encoded again, the prompts are not."""
    from diffusers import UNet2DConditionModel

    from semanticdraw_cli.families import ip_adapter, presets

    unet = UNet2DConditionModel.from_pretrained(presets.ensure_preset("sd15", "tiny"), subfolder="unet")
    ip_adapter.build_random_adapter(unet, scene_file.parent / "ipa")
    look = scene_file.parent / "look.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(look)
    reference = "reference: {image: look.png, weight: 0.6, adapter: ./ipa/ip-adapter.safetensors}"
    save(scene_file, SCENE.replace("mask: fox.png}", f"mask: fox.png, {reference}}}"))
    watch = session()
    watch.ready()
    before = pixels(watch.out / "scene-latest.png")
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(look)
    second = watch.wait("rendered", 2)
    assert second.files == (look,) and second.recomputed == {"reference": 1}  # no prompt encoded again
    assert (pixels(watch.out / "scene-latest.png") != before).any(axis=-1).mean() > 0.05  # 30 % here
