"""Layered drawings (.psd, .ora) as scenes: layer -> region mapping, background, settings, import, bad input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import SceneError
from semanticdraw_cli.scene.layered_files import read_document
from semanticdraw_cli.scene.layers import split_name
from drawings import KINDS, blob, disc, group, layer, make, make_ora, make_psd


def problems_of(excinfo) -> str:
    return "\n".join(str(p) for p in excinfo.value.problems)


# --- reading layers ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_layers_read_bottom_first_with_offsets(tmp_path, kind):
    path = make(kind, tmp_path / "art", (64, 32), [layer("sky", blob((64, 32))), layer("sun", disc((10, 6)), 40, 3)])
    document = read_document(path)
    assert (document.width, document.height) == (64, 32)
    assert [x.name for x in document.layers] == ["sky", "sun"]
    sun = document.layers[1]
    assert sun.box == (40, 3, 50, 9)
    alpha = sun.alpha_on_canvas(64, 32)
    expected = np.zeros((32, 64), np.float32)
    expected[3:9, 40:50] = np.asarray(disc((10, 6)))[..., 3] / 255
    np.testing.assert_allclose(alpha, expected, atol=1 / 255)
    assert document.layers[0].covers(64, 32) and not sun.covers(64, 32)


@pytest.mark.parametrize("kind", KINDS)
def test_hidden_layers_and_groups_are_skipped_and_groups_flatten(tmp_path, kind):
    specs = [
        layer("a", blob((8, 8))),
        layer("hidden", blob((8, 8)), visible=False),
        group("trees", [layer("oak", blob((8, 8)), 8), group("inner", [layer("pine", blob((8, 8)), 16)])]),
        group("off", [layer("gone", blob((8, 8)))], visible=False),
        layer("top", blob((8, 8)), 24),
    ]
    document = read_document(make(kind, tmp_path / "art", (32, 16), specs))
    assert [x.name for x in document.layers] == ["a", "oak", "pine", "top"]
    assert [x.where for x in document.layers] == ["a", "trees/oak", "trees/inner/pine", "top"]


@pytest.mark.parametrize("kind", KINDS)
def test_layers_partly_outside_are_clipped(tmp_path, kind):
    document = read_document(make(kind, tmp_path / "art", (16, 16), [layer("edge", blob((8, 8)), -4, 12)]))
    edge = document.layers[0]
    assert edge.box == (0, 12, 4, 16)
    alpha = edge.alpha_on_canvas(16, 16)
    assert alpha.sum() == 16 and alpha[12:, :4].min() == 1


def test_split_name():
    assert split_name("a large tree") == ("a large tree", "a large tree")
    assert split_name("sun: the sun, glowing") == ("sun", "the sun, glowing")
    assert split_name("photo: 16:9 frame") == ("photo", "16:9 frame")
    assert split_name(": only a prompt") == ("only a prompt", "only a prompt")
    assert split_name("sun:") == ("sun", "")


def test_psd_layer_mask_counts_and_opacity_does_not(tmp_path):
    from psd_tools import PSDImage

    path = make_psd(tmp_path / "art.psd", (32, 16), [layer("sun", disc((12, 8)), 4, 2)], mode="RGB")  # alpha -> mask
    psd = PSDImage.open(path)
    assert psd[0].has_mask()
    psd[0].opacity, psd[0].fill_opacity = 64, 128
    psd.save(path)
    alpha = read_document(path).layers[0].alpha_on_canvas(32, 16)
    np.testing.assert_allclose(alpha, canvas_alpha(disc((12, 8)), 4, 2, (32, 16)), atol=1 / 255)


@pytest.mark.parametrize(("mode", "depth"), [("L", 8), ("RGB", 16)])
def test_psd_grayscale_and_16_bit_are_converted(tmp_path, mode, depth):
    path = make_psd(tmp_path / "art.psd", (16, 8), [layer("sun", blob((8, 8), alpha=128), 4)], mode=mode, depth=depth)
    alpha = read_document(path).layers[0].alpha_on_canvas(16, 8)
    assert alpha[:, 4:12].min() > 0.45 and alpha[:, :4].max() == 0


# --- bad drawings: one clear problem each, never a traceback ------------------------------------


def bad_drawings(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the problem must contain)."""
    good = make_psd(tmp_path / "good.psd", (32, 16), [layer("sun", blob((8, 8)))]).read_bytes()
    cases = {}

    def put(name, data, words):
        path = tmp_path / name
        path.write_bytes(data)
        cases[name] = (path, words)

    put("garbage.psd", b"not a photoshop file at all" * 10, "not a readable PSD file")
    put("truncated.psd", good[:-10], "the file is truncated")
    put("cut.psd", good[:60], "not a readable PSD file")
    put("notzip.ora", b"plain text", "not a zip archive")
    ora = lambda name, **kw: make_ora(tmp_path / name, (32, 16), [layer("sun", blob((8, 8)))], **kw)  # noqa: E731
    with zipfile.ZipFile(tmp_path / "nostack.ora", "w") as archive:
        archive.writestr("mimetype", "image/openraster")
    cases["nostack.ora"] = (tmp_path / "nostack.ora", "no stack.xml")
    cases["mimetype.ora"] = (ora("mimetype.ora", mimetype="application/x-krita"), "application/x-krita")
    cases["badpng.ora"] = (ora("badpng.ora", files={"data/layer0.png": b"\x89PNG broken"}), "not a readable PNG")
    cases["outside.psd"] = (
        make_psd(tmp_path / "outside.psd", (32, 16), [layer("ok", blob((8, 8))), layer("lost", blob((8, 8)), 40, 0)]),
        "'lost': lies entirely outside the 32x16 canvas",
    )
    cases["outside.ora"] = (
        make_ora(tmp_path / "outside.ora", (32, 16), [layer("lost", blob((8, 8)), 0, -20)]),
        "'lost': lies entirely outside",
    )
    cases["hidden.psd"] = (make_psd(tmp_path / "hidden.psd", (32, 16), [layer("a", blob((8, 8)), visible=False)]), "no visible layers")
    cases["empty.ora"] = (make_ora(tmp_path / "empty.ora", (32, 16), []), "no visible layers")
    cases["cmyk.psd"] = (make_psd(tmp_path / "cmyk.psd", (32, 16), [layer("a", blob((8, 8)))], mode="CMYK"), "colour mode CMYK")
    cases["deep.psd"] = (make_psd(tmp_path / "deep.psd", (32, 16), [layer("a", blob((8, 8)))], mode="RGB", depth=32), "32 bits")
    cases["odd.psd"] = (make_psd(tmp_path / "odd.psd", (30, 17), [layer("a", blob((8, 8)))]), "resize the canvas to 32x16")
    cases["odd.ora"] = (make_ora(tmp_path / "odd.ora", (1001, 603), [layer("a", blob((8, 8)))]), "1000x600")
    side = defaults.MAX_CANVAS_SIDE + 8
    cases["huge.ora"] = (make_ora(tmp_path / "huge.ora", (side, 8), [layer("a", blob((8, 8)))]), "too large")
    return cases


def test_every_bad_drawing_is_one_clear_problem(tmp_path):
    for name, (path, words) in bad_drawings(tmp_path).items():
        with pytest.raises(SceneError) as excinfo:
            read_document(path)
        text = problems_of(excinfo)
        assert str(path) in text, name
        assert words in text, (name, text)


def test_too_many_layers_refused_before_decoding(tmp_path):
    specs = [layer(f"r{i}", blob((8, 8))) for i in range(defaults.MAX_REGIONS + 2)]
    with pytest.raises(SceneError) as excinfo:
        read_document(make_ora(tmp_path / "many.ora", (16, 16), specs))
    assert f"at most {defaults.MAX_REGIONS} regions" in problems_of(excinfo)


def test_all_layer_problems_reported_together(tmp_path):
    specs = [layer("a", blob((8, 8)), 100, 0), layer("b", blob((8, 8)), 0, 100)]
    with pytest.raises(SceneError) as excinfo:
        read_document(make_psd(tmp_path / "two.psd", (32, 16), specs))
    assert len(excinfo.value.problems) == 2


# --- drawings as scenes -----------------------------------------------------------------------

from typer.testing import CliRunner  # noqa: E402

from semanticdraw_cli.cli.app import app  # noqa: E402
from semanticdraw_cli.scene.layers import load_layered_scene  # noqa: E402
from semanticdraw_cli.scene.loader import load_scene  # noqa: E402


def canvas_alpha(image: Image.Image, left: int, top: int, size=(64, 32)) -> np.ndarray:
    out = np.zeros((size[1], size[0]), np.float32)
    alpha = np.asarray(image)[..., 3] / 255
    h, w = alpha.shape
    out[max(top, 0) : top + h, max(left, 0) : left + w] = alpha[max(-top, 0) :, max(-left, 0) :][: size[1], : size[0]]
    return out


SUN, HILL = disc((12, 8)), blob((40, 12), (0, 200, 0))


def scene_specs():
    return [
        layer("Background", blob((64, 32), (0, 0, 255))),
        layer("hill: green rolling hills", HILL, -8, 20),
        group("sky", [layer("sun: the sun, glowing", SUN, 44, 2), layer("moon", blob((4, 4)), visible=False)]),
        layer("a small red bird", blob((4, 4), alpha=128), 10, 5),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_visible_layers_become_regions_bottom_first(tmp_path, kind):
    path = make(kind, tmp_path / "art", (64, 32), scene_specs())
    scene = load_layered_scene(path)
    assert (scene.canvas.width, scene.canvas.height) == (64, 32)
    assert scene.name == "art" and scene.source == path
    assert [(r.name, r.prompt) for r in scene.regions] == [
        ("hill", "green rolling hills"), ("sun", "the sun, glowing"), ("a small red bird", "a small red bird"),
    ]
    masks = [r.mask for r in scene.regions]
    assert all(m.kind == "array" and m.array.dtype == np.float32 and m.array.shape == (32, 64) for m in masks)
    np.testing.assert_allclose(masks[0].array, canvas_alpha(HILL, -8, 20), atol=1 / 255)
    np.testing.assert_allclose(masks[1].array, canvas_alpha(SUN, 44, 2), atol=1 / 255)
    assert masks[2].array[5:9, 10:14] == pytest.approx(128 / 255) and masks[2].array.sum() == pytest.approx(16 * 128 / 255)
    assert scene.background.image_array.shape == (32, 64, 3)
    assert (scene.background.image_array == [0, 0, 255]).all() and scene.background.prompt is None


@pytest.mark.parametrize("kind", KINDS)
def test_background_layer_by_name_anywhere_with_prompt_over_white(tmp_path, kind):
    specs = [layer("tree", blob((8, 8))), layer("BACKGROUND: clear deep blue sky", blob((16, 32), (0, 0, 0)), 0, 0)]
    scene = load_layered_scene(make(kind, tmp_path / "art", (32, 32), specs))
    assert [r.name for r in scene.regions] == ["tree"]
    assert scene.background.prompt == "clear deep blue sky"
    picture = scene.background.image_array
    assert (picture[:, :16] == 0).all() and (picture[:, 16:] == 255).all()  # transparent parts count as white


def test_bottom_layer_is_a_region_unless_opaque_over_the_canvas(tmp_path):
    partial = [layer("sea", blob((32, 16), alpha=254)), layer("boat", blob((8, 8)))]
    assert [r.name for r in load_layered_scene(make_ora(tmp_path / "a.ora", (32, 16), partial)).regions] == ["sea", "boat"]
    alone = [layer("ocean", blob((32, 16)))]
    scene = load_layered_scene(make_ora(tmp_path / "b.ora", (32, 16), alone))
    assert [r.name for r in scene.regions] == ["ocean"] and scene.background.image_array is None


def test_two_background_layers_and_layers_without_prompt_are_problems(tmp_path):
    specs = [layer("background", blob((8, 8))), layer("Background: sky", blob((8, 8))), layer("x", blob((8, 8)))]
    with pytest.raises(SceneError, match="2 layers are named background"):
        load_layered_scene(make_psd(tmp_path / "two.psd", (16, 8), specs))
    with pytest.raises(SceneError, match=r"layer 'sun:' \(regions\[0\].prompt\): is empty"):
        load_layered_scene(make_psd(tmp_path / "sun.psd", (16, 8), [layer("sun:", blob((8, 8)))]))


def test_repeated_layer_names_stay_unique(tmp_path):
    specs = [layer("tree", blob((8, 8))), layer("tree", blob((8, 8)), 8), layer("tree-2", blob((8, 8)), 16)]
    scene = load_layered_scene(make_ora(tmp_path / "art.ora", (32, 8), specs))
    assert [(r.name, r.prompt) for r in scene.regions] == [("tree", "tree"), ("tree-3", "tree"), ("tree-2", "tree-2")]


# --- settings: sidecar YAML, `layers:` key, --set ---------------------------------------------------------


SETTINGS = """\
sampler: {seed: 7, steps: 4}
background: {prompt: from the settings}
defaults: {negative: blurry, blur: 2.0}
regions_by_name:
  sun: {blur: 6, prompt: a long prompt for the sun}
  hill: {negative: snow}
"""


@pytest.mark.parametrize("kind", KINDS)
def test_sidecar_settings(tmp_path, kind):
    path = make(kind, tmp_path / "art", (64, 32), scene_specs())
    (tmp_path / "art.yaml").write_text(SETTINGS)
    scene = load_layered_scene(path, ["regions[2].strength=0.5"])
    assert scene.sampler.seed == 7 and scene.sampler.steps == (0, 1, 2, 3)
    assert scene.background.prompt == "from the settings"
    hill, sun, bird = scene.regions
    assert (sun.blur, sun.prompt, sun.negative) == (6.0, "a long prompt for the sun", "blurry")
    assert (hill.blur, hill.negative) == (2.0, "snow")
    assert bird.strength == 0.5 and bird.mask.kind == "array"


def test_background_layer_prompt_wins_over_settings_and_set_over_both(tmp_path):
    specs = [layer("background: layer sky", blob((16, 8))), layer("bird", blob((4, 4)))]
    path = make_psd(tmp_path / "art.psd", (16, 8), specs)
    (tmp_path / "art.yaml").write_text("background: {prompt: settings sky}\n")
    assert load_layered_scene(path).background.prompt == "layer sky"
    assert load_layered_scene(path, ["background.prompt=cli sky"]).background.prompt == "cli sky"


def test_settings_problems_are_all_reported_naming_the_settings_file(tmp_path):
    path = make_psd(tmp_path / "art.psd", (64, 32), scene_specs())
    sidecar = tmp_path / "art.yaml"
    sidecar.write_text(
        "canvas: {width: 8, height: 8}\nregions: []\nsampler: {seed: -1}\n"
        "regions_by_name: {sunn: {blur: 1}, hill: {blurr: 2, mask: x.png}, sun: {strength: 3}}\n"
    )
    with pytest.raises(SceneError) as excinfo:
        load_layered_scene(path, ["canvas.width=16", "regions[0].mask=a.png"])
    text = problems_of(excinfo)
    for words in [
        "canvas: is decided by art.psd", "regions: is decided by art.psd", "regions_by_name.sunn: no visible layer",
        "regions_by_name.hill.mask: comes from the layer", "regions_by_name.hill.blurr: unknown key",
        "regions_by_name.sun.strength: must be between 0 and 1", "sampler.seed", "'canvas.width=16'",
        "'regions[0].mask=a.png'",
    ]:
        assert words in text, words
    assert all(p.file == str(sidecar) for p in excinfo.value.problems)


def test_bad_sidecar_yaml_is_a_problem_with_its_line(tmp_path):
    path = make_psd(tmp_path / "art.psd", (16, 8), [layer("bird", blob((4, 4)))])
    (tmp_path / "art.yaml").write_text("sampler:\n  seed: [1,\n")
    with pytest.raises(SceneError) as excinfo:
        load_layered_scene(path)
    assert excinfo.value.problems[0].file.endswith("art.yaml") and excinfo.value.problems[0].line is not None


def test_settings_passed_directly(tmp_path):
    path = make_ora(tmp_path / "art.ora", (64, 32), scene_specs())
    settings = {"sampler": {"seed": 11}, "regions_by_name": {"sun": {"blur": 0}}}
    scene = load_layered_scene(path, settings=settings, settings_file=tmp_path / "shot.yaml")
    assert scene.sampler.seed == 11 and scene.regions[1].blur == 0
    assert scene.name == "shot" and scene.source == path


def test_yaml_scene_with_layers_key_delegates(tmp_path):
    drawings = tmp_path / "drawings"
    drawings.mkdir()
    path = make_psd(drawings / "art.psd", (64, 32), scene_specs())
    (drawings / "art.yaml").write_text("sampler: {seed: 99}\n")  # the sidecar is not read in this case
    shot = tmp_path / "shot.yaml"
    shot.write_text("layers: drawings/art.psd\nsampler: {seed: 5}\nregions_by_name: {hill: {blur: 3}}\n")
    scene = load_scene(shot)
    assert scene.sampler.seed == 5 and scene.regions[0].blur == 3
    assert scene.name == "shot" and scene.source == path.resolve()
    (tmp_path / "bad.yaml").write_text("layers: drawings/art.psd\nregions_by_name: {sky: {blur: 3}}\n")
    with pytest.raises(SceneError, match="regions_by_name.sky: no visible layer"):
        load_scene(tmp_path / "bad.yaml")


def test_load_scene_reads_drawings_directly(tmp_path):
    path = make_ora(tmp_path / "art.ora", (64, 32), scene_specs())
    assert [r.name for r in load_scene(path).regions] == ["hill", "sun", "a small red bird"]


# --- import and the command line --------------------------------------------------------------


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("kind", KINDS)
def test_import_round_trip(tmp_path, kind):
    path = make(kind, tmp_path / "art", (64, 32), scene_specs())
    (tmp_path / "art.yaml").write_text(SETTINGS)
    output = tmp_path / "out" / "scene.yaml"
    result = invoke("import", path, "-o", output)
    assert result.exit_code == 0, result.output
    masks = sorted(p.name for p in (tmp_path / "out" / "scene-masks").iterdir())
    assert masks == ["01-hill.png", "02-sun.png", "03-a-small-red-bird.png", "background.png"]
    assert invoke("validate", output).exit_code == 0
    layered, imported = load_layered_scene(path), load_scene(output)
    assert imported.canvas == layered.canvas and imported.sampler == layered.sampler
    assert imported.background.prompt == layered.background.prompt
    from semanticdraw_cli.scene.rasterize import load_rgb, rasterize_mask

    assert (load_rgb(imported.background.image, imported.canvas) == layered.background.image_array).all()
    for a, b in zip(layered.regions, imported.regions, strict=True):
        assert (a.name, a.prompt, a.negative, a.blur, a.strength) == (b.name, b.prompt, b.negative, b.blur, b.strength)
        assert b.mask.kind == "image"
        assert np.abs(rasterize_mask(b.mask, imported.canvas) - a.mask.array).max() <= 1 / 255


def test_import_refuses_to_overwrite_and_replaces_with_overwrite(tmp_path):
    path = make_ora(tmp_path / "art.ora", (64, 32), scene_specs())
    output = tmp_path / "scene.yaml"
    assert invoke("import", path, "-o", output).exit_code == 0
    before = output.read_text()
    result = invoke("import", path, "-o", output)
    assert result.exit_code == 2 and "exist already" in result.output and "--overwrite" in result.output
    assert output.read_text() == before
    fewer = make_ora(tmp_path / "art.ora", (64, 32), [layer("bird", blob((4, 4)))])
    assert invoke("import", fewer, "-o", output, "--overwrite").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "scene-masks").iterdir()) == ["01-bird.png"]  # stale masks removed


def test_import_refuses_the_drawings_own_sidecar_name(tmp_path):
    path = make_psd(tmp_path / "art.psd", (16, 8), [layer("bird", blob((4, 4)))])
    result = invoke("import", path, "-o", tmp_path / "art.yaml")
    assert result.exit_code == 2 and "sidecar" in result.output
    assert not (tmp_path / "art.yaml").exists()


def test_import_of_a_bad_drawing_exits_2_and_writes_nothing(tmp_path):
    path = make_ora(tmp_path / "art.ora", (30, 16), [layer("bird", blob((4, 4)))])
    result = invoke("import", path, "-o", tmp_path / "scene.yaml")
    assert result.exit_code == 2 and "not a multiple of 8" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art.ora"]


def test_validate_reports_every_bad_drawing_with_exit_2(tmp_path):
    cases = bad_drawings(tmp_path)
    for name, (path, words) in cases.items():
        result = invoke("validate", path)
        assert result.exit_code == 2, (name, result.output)
        assert words in result.output and "Traceback" not in result.output, (name, result.output)
    result = invoke("validate", *[path for path, _ in cases.values()])
    assert result.exit_code == 2 and all(path.name in result.output for path, _ in cases.values())


def test_validate_accepts_a_good_drawing(tmp_path):
    path = make_psd(tmp_path / "art.psd", (64, 32), scene_specs())
    result = invoke("validate", path)
    assert result.exit_code == 0 and "64x32, 3 regions" in result.output


def test_validate_checks_a_sidecar_as_the_drawings_settings(tmp_path):
    path = make_psd(tmp_path / "art.psd", (64, 32), scene_specs())
    sidecar = tmp_path / "art.yaml"
    sidecar.write_text(SETTINGS)
    result = invoke("validate", *sorted(tmp_path.iterdir()))  # `validate folder/*`: the drawing and its sidecar
    assert result.exit_code == 0, result.output
    assert f"ok: {path} (64x32, 3 regions)" in result.output
    assert f"ok: {sidecar} (64x32, 3 regions, drawing {path})" in result.output
    assert load_scene(sidecar).regions[1].blur == 6  # the sidecar's settings apply
    sidecar.write_text("regions_by_name: {sky: {blur: 3}}\n")
    result = invoke("validate", sidecar)
    assert result.exit_code == 2 and f"{sidecar}: regions_by_name.sky: no visible layer" in result.output


def test_validate_names_the_yaml_scene_given_not_its_drawing(tmp_path):
    path = make_psd(tmp_path / "art.psd", (64, 32), [layer("bird", blob((4, 4)))])
    shot = tmp_path / "shot.yaml"
    shot.write_text("layers: art.psd\n")
    result = invoke("validate", shot)
    assert result.exit_code == 0 and f"ok: {shot} (64x32, 1 region, drawing {path.resolve()})" in result.output


@pytest.mark.parametrize(("name", "words"), [(".", "is a folder"), ("scene.txt", "unknown extension '.txt'"),
                                             ("scene", "no extension")])
def test_import_output_names_are_checked_before_reading_the_drawing(tmp_path, monkeypatch, name, words):
    path = make_ora(tmp_path / "art.ora", (64, 32), scene_specs())
    monkeypatch.chdir(tmp_path)
    result = invoke("import", path, "-o", name)
    assert result.exit_code == 2 and words in result.output and ".yaml" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art.ora"]


def test_import_writes_through_the_shared_atomic_writer(tmp_path):
    from semanticdraw_cli.scene import layers

    assert not hasattr(layers, "_write_atomically")
    path = make_ora(tmp_path / "art.ora", (64, 32), scene_specs())
    stale = tmp_path / "out" / ".scene.yaml.semanticdraw-999999999-abc.tmp"  # a killed import's leftover
    stale.parent.mkdir()
    stale.write_text("half")
    assert invoke("import", path, "-o", tmp_path / "out" / "scene.yaml").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scene-masks", "scene.yaml"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
                   + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]), "at most 1,000,000"),
        ("a: &a [*a]", "refers to a mapping or list that contains it"),
        ("a: " + "[" * 500 + "]" * 500, "nested too deeply"),
        ("sampler: {seed: 2024-02-30}", "not a valid date"),
    ],
)
def test_sidecar_settings_have_the_limits_of_scene_files(tmp_path, text, words):
    path = make_psd(tmp_path / "art.psd", (16, 8), [layer("bird", blob((4, 4)))])
    (tmp_path / "art.yaml").write_text(text + "\n")
    result = invoke("validate", path)
    assert result.exit_code == 2 and "art.yaml" in result.output and words in result.output, result.output


def test_a_sidecar_that_is_not_a_regular_file_is_refused_not_skipped(tmp_path):
    import os

    path = make_psd(tmp_path / "art.psd", (16, 8), [layer("bird", blob((4, 4)))])
    os.mkfifo(tmp_path / "art.yaml")
    result = invoke("validate", path)
    assert result.exit_code == 2 and "art.yaml: not a regular file (a FIFO)" in result.output, result.output


def test_drawings_and_settings_pictures_outside_the_scene_folder_need_allow_outside(tmp_path):
    make_psd(tmp_path / "art.psd", (64, 32), scene_specs())
    Image.new("RGB", (16, 8)).save(tmp_path / "base.png")
    (tmp_path / "shots").mkdir()
    shot = tmp_path / "shots" / "shot.yaml"
    shot.write_text("layers: ../art.psd\n")
    result = invoke("validate", shot)
    assert result.exit_code == 2 and "layers: ../art.psd: resolves to" in result.output, result.output
    assert "--allow-outside" in result.output
    assert invoke("validate", shot, "--allow-outside").exit_code == 0
    drawing = make_psd(tmp_path / "shots" / "bird.psd", (16, 8), [layer("bird", blob((4, 4)))])
    (tmp_path / "shots" / "bird.yaml").write_text("background: {image: ../base.png}\n")
    for args in (["validate", drawing], ["import", drawing, "-o", tmp_path / "shots" / "imported.yaml"]):
        result = invoke(*args)
        assert result.exit_code == 2 and "background.image: ../base.png: resolves to" in result.output, result.output
        assert invoke(*args, "--allow-outside").exit_code == 0


def test_a_symlinked_drawing_or_sidecar_beside_a_scene_is_confined_to_its_folder(tmp_path):
    elsewhere, folder = tmp_path / "elsewhere", tmp_path / "scene"
    elsewhere.mkdir(), folder.mkdir()
    make_psd(elsewhere / "secret.psd", (16, 8), [layer("bird", blob((4, 4)))])
    (elsewhere / "secret.yaml").write_text("sampler: {seed: 5}\n")
    (folder / "art.yaml").write_text("sampler: {seed: 3}\n")
    (folder / "art.psd").symlink_to(elsewhere / "secret.psd")  # art.yaml implies art.psd
    result = invoke("validate", folder / "art.yaml")
    assert result.exit_code == 2, result.output
    assert f"{folder / 'art.psd'}: resolves to {elsewhere / 'secret.psd'}, outside the scene's folder" in result.output
    assert "the scene's drawing, found beside it" in result.output and "--allow-outside" in result.output
    assert invoke("validate", folder / "art.yaml", "--allow-outside").exit_code == 0
    make_psd(folder / "bird.psd", (16, 8), [layer("bird", blob((4, 4)))])
    (folder / "bird.yaml").symlink_to(elsewhere / "secret.yaml")  # bird.psd implies bird.yaml
    result = invoke("validate", folder / "bird.psd")
    assert result.exit_code == 2, result.output
    assert f"{folder / 'bird.yaml'}: resolves to {elsewhere / 'secret.yaml'}" in result.output
    assert "the scene's settings, found beside it" in result.output
    assert invoke("validate", folder / "bird.psd", "--allow-outside").exit_code == 0


def test_a_symlinked_sidecar_names_pictures_relative_to_its_own_folder_not_its_target(tmp_path):
    (tmp_path / "settings").mkdir()
    Image.new("RGB", (16, 8), "white").save(tmp_path / "paper.png")
    (tmp_path / "settings" / "bird.yaml").write_text("background: {image: paper.png}\n")
    drawing = make_psd(tmp_path / "bird.psd", (16, 8), [layer("bird", blob((4, 4)))])
    (tmp_path / "bird.yaml").symlink_to(tmp_path / "settings" / "bird.yaml")
    assert load_layered_scene(drawing).background.image == tmp_path / "paper.png"


# --- hostile drawings: bounded reads, bombs, deep nesting, damaged archives -------------------------


def test_a_plain_psd_layer_is_decoded_only_where_it_lies_on_the_canvas(tmp_path, monkeypatch):
    from psd_tools.api.layers import PixelLayer
    from psd_tools.compression import rle_impl

    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (400, 300, 4), dtype=np.uint8)  # (h, w, 4), reaching far past the 64x32 canvas
    path = make_psd(tmp_path / "art.psd", (64, 32), [layer("sky", Image.fromarray(big, "RGBA"), -100, -50)])
    rows = []
    decode = rle_impl.decode
    monkeypatch.setattr(rle_impl, "decode", lambda data, size: rows.append(size) or decode(data, size))
    monkeypatch.setattr(PixelLayer, "composite", lambda *a, **k: pytest.fail("psd-tools expanded the whole layer"))
    (sky,) = read_document(path).layers
    assert sky.box == (0, 0, 64, 32) and np.array_equal(sky.rgba, big[50:82, 100:164])
    assert len(rows) == 4 * 32  # R, G, B and alpha, each only the 32 rows on the canvas


def test_a_plain_psd_layer_whose_channel_is_cut_short_is_a_problem_naming_it(tmp_path):
    from psd_tools import PSDImage

    path = make_psd(tmp_path / "art.psd", (64, 32), [layer("sky", disc((64, 32)))])
    psd = PSDImage.open(path)
    channel = psd[0]._channels[0]
    channel.data = channel.data[: len(channel.data) // 2]  # rows whose lengths point past the data
    psd.save(path)
    result = invoke("validate", path)
    assert result.exit_code == 2, result.output
    assert "layer 'sky': cannot read its pixels (ValueError: a channel's rows need" in result.output


@pytest.mark.parametrize("kind", KINDS)
def test_a_drawing_that_decodes_more_pixels_than_the_limit_is_refused_naming_the_layer(tmp_path, kind, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_DRAWING_PIXELS", 5000)
    path = make(kind, tmp_path / "art", (64, 64), [layer("a", blob((64, 64))), layer("b", blob((64, 64)))])
    result = invoke("validate", path)
    assert result.exit_code == 2, result.output
    assert "layer 'b': brings the pixels decoded for this drawing to 8,192, over the limit of 5,000" in result.output
    assert "layer 'a'" not in result.output


def test_a_psd_layer_that_psd_tools_composites_counts_whole_and_six_times(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_DRAWING_PIXELS", 6 * 100 * 100 - 1)
    path = make_psd(tmp_path / "art.psd", (64, 32), [layer("sky", blob((100, 100)), -10, -10)])
    assert read_document(path).layers[0].box == (0, 0, 64, 32)  # read row by row: 64 x 32 counted
    from psd_tools import PSDImage

    psd = PSDImage.open(path)
    psd[0].create_mask(Image.new("L", (100, 100), 255))  # a layer mask: psd-tools composites the layer
    psd.save(path)
    with pytest.raises(SceneError) as info:
        read_document(path)
    assert "layer 'sky': brings the pixels decoded for this drawing to 60,000, over the limit of 59,999" in problems_of(info)


def test_an_openraster_member_shared_by_many_layers_is_decoded_once(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_DRAWING_PIXELS", 200 * 200)  # the member once; 20 times would be refused
    buffer = io.BytesIO()
    blob((200, 200)).save(buffer, "PNG")
    layers = "".join(f"<layer name='l{i}' src='data/shared.png' x='-{i}' y='0'/>" for i in range(20))
    path = tmp_path / "shared.ora"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "image/openraster")
        archive.writestr("stack.xml", f"<image w='64' h='64'><stack>{layers}</stack></image>")
        archive.writestr("data/shared.png", buffer.getvalue())
    opened = []
    open_image = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1) or open_image(*a, **k))
    document = read_document(path)
    assert len(document.layers) == 20 and len(opened) == 1
    assert all(layer.rgba.shape == (64, 64, 4) for layer in document.layers)


def patched_member(path: Path, name: str, local: int, central: int, value: int) -> Path:
    """Set a 2-byte field of member `name` in its local header and its directory entry."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, offset, name_at in ((b"PK\x03\x04", local, 30), (b"PK\x01\x02", central, 46)):
        at = 0
        while data[at + name_at : at + name_at + len(encoded)] != encoded:
            at = data.index(signature, at + 1)
        data[at + offset : at + offset + 2] = value.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def ora_with_stack(path: Path, inner_xml: str, size=(32, 16)) -> Path:
    """An .ora whose <stack> holds `inner_xml`; its layers all use one 8x8 red PNG."""
    buffer = io.BytesIO()
    blob((8, 8)).save(buffer, "PNG")
    stack = f"<image w='{size[0]}' h='{size[1]}'><stack>{inner_xml}</stack></image>"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "image/openraster")
        archive.writestr("stack.xml", stack)
        archive.writestr("data/a.png", buffer.getvalue())
    return path


def hostile_drawings(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the problem must contain); each is one problem, no traceback."""
    ora = lambda name, **kw: make_ora(tmp_path / name, (32, 16), [layer("sun", blob((8, 8)))], **kw)  # noqa: E731
    cases = {
        "encrypted.ora": (patched_member(ora("encrypted.ora"), "data/layer0.png", 6, 8, 1), "data/layer0.png: is encrypted"),
        "method.ora": (patched_member(ora("method.ora"), "data/layer0.png", 8, 10, 99), "compression method 99"),
        "mimetype.ora": (ora("mimetype.ora", mimetype="image/openraster" + " x" * 500_000), "not 'image/openraster'"),
    }
    crc = ora("crc.ora")
    with zipfile.ZipFile(crc) as archive:
        png = archive.read("data/layer0.png")  # stored: its bytes lie in the archive as they are
    crc.write_bytes(crc.read_bytes().replace(png, png[:40] + bytes([png[40] ^ 0xFF]) + png[41:]))
    cases["crc.ora"] = (crc, "data/layer0.png: cannot be read (Bad CRC-32")
    for value in ("inf", "1e400", "nan", "9" * 500):
        name = f"x-{value[:5]}.ora"
        path = ora_with_stack(tmp_path / name, f"<layer name='sun' src='data/a.png' x='{value}' y='0'/>")
        cases[name] = (path, f"x='{value[:17]}")
    deep = "<stack name='g'>" * 5000 + "<layer name='sun' src='data/a.png'/>" + "</stack>" * 5000
    cases["deep.ora"] = (ora_with_stack(tmp_path / "deep.ora", deep), f"nest more than {defaults.MAX_LAYER_DEPTH} deep")
    return cases


def test_every_hostile_drawing_is_one_clear_problem(tmp_path):
    for name, (path, words) in hostile_drawings(tmp_path).items():
        with pytest.raises(SceneError) as excinfo:
            read_document(path)
        text = problems_of(excinfo)
        assert str(path) in text and words in text, (name, text)
        result = invoke("validate", path)
        assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output, (name, result.output)


def test_an_ora_layer_over_the_size_limit_is_refused_from_its_declared_size(tmp_path, monkeypatch):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 32, 4), np.uint8), "RGBA")
    path = make_ora(tmp_path / "art.ora", (32, 16), [layer("sun", noise)])
    with zipfile.ZipFile(path) as archive:
        size = archive.getinfo("data/layer0.png").file_size
    monkeypatch.setattr(defaults, "MAX_PICTURE_BYTES", size - 1)
    with pytest.raises(SceneError, match=f"data/layer0.png: declares {size:,} bytes; at most {size - 1:,} are read"):
        read_document(path)


def test_a_layer_png_is_sized_from_its_header_before_it_is_inflated(tmp_path, monkeypatch):
    path = make_ora(tmp_path / "art.ora", (32, 16), [layer("sun", blob((8, 8)))])
    monkeypatch.setattr(defaults, "MAX_MASK_IMAGE_PIXELS", 63)
    with monkeypatch.context() as patch:
        patch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("the PNG was decoded"))
        with pytest.raises(SceneError, match="8x8, too large"):
            read_document(path)


@pytest.mark.parametrize("kind", KINDS)
def test_drawings_that_are_not_regular_files_or_too_large_are_refused(tmp_path, kind, monkeypatch):
    import os

    os.mkfifo(tmp_path / f"fifo.{kind}")
    (tmp_path / f"zero.{kind}").symlink_to("/dev/zero")
    for name, words in ((f"fifo.{kind}", "not a regular file (a FIFO)"), (f"zero.{kind}", "a character device")):
        result = invoke("validate", tmp_path / name)
        assert result.exit_code == 2 and words in result.output, result.output
    path = make(kind, tmp_path / "art", (16, 8), [layer("bird", blob((4, 4)))])
    monkeypatch.setattr(defaults, "MAX_PSD_BYTES" if kind == "psd" else "MAX_ORA_BYTES", 100)
    with pytest.raises(SceneError, match="may have at most 100"):
        read_document(path)


def test_psd_layers_larger_than_the_picture_limit_are_refused_before_decoding(tmp_path, monkeypatch):
    path = make_psd(tmp_path / "art.psd", (16, 8), [layer("bird", blob((40, 40)), -10, -10)])
    monkeypatch.setattr(defaults, "MAX_MASK_IMAGE_PIXELS", 40 * 40 - 1)
    with pytest.raises(SceneError, match="layer 'bird': is 40x40 pixels, over the limit of 1,599"):
        read_document(path)


@pytest.mark.parametrize("kind", KINDS)
def test_control_characters_in_layer_names_are_dropped(tmp_path, kind):
    """Krita writes PSD layer names with a trailing NUL; `regions_by_name` must still match them."""
    end, middle = ("\x00", "\x7f") if kind == "psd" else ("\n", "\t")  # XML holds no NUL
    specs = [layer("a clear blue lake" + end, blob((8, 8))), layer(f"sun:\tthe{middle}sun{end}", blob((4, 4)))]
    path = make(kind, tmp_path / "art", (16, 8), specs)
    (tmp_path / "art.yaml").write_text("regions_by_name: {a clear blue lake: {blur: 3}}\n")
    scene = load_layered_scene(path)
    assert [(r.name, r.prompt, r.blur) for r in scene.regions] == [
        ("a clear blue lake", "a clear blue lake", 3.0), ("sun", "the sun", 1.0)]


def test_import_never_writes_a_mask_over_a_picture_the_drawing_reads(tmp_path):
    path = make_ora(tmp_path / "art.ora", (64, 32), [layer("bird", blob((4, 4)))])
    picture = tmp_path / "out-masks" / "01-bird.png"  # where the import writes the bird's mask
    picture.parent.mkdir()
    Image.new("RGB", (64, 32), "white").save(picture)
    before = picture.read_bytes()
    (tmp_path / "art.yaml").write_text("background: {image: out-masks/01-bird.png}\n")
    result = invoke("import", path, "-o", tmp_path / "out.yaml", "--overwrite")
    assert result.exit_code == 2, result.output
    assert f"{picture}: the output would overwrite the background picture of {path}" in result.output
    assert picture.read_bytes() == before and not (tmp_path / "out.yaml").exists()


def test_import_never_removes_a_picture_the_drawing_reads_as_a_stale_mask(tmp_path):
    path = make_ora(tmp_path / "art.ora", (64, 32), [layer("bird", blob((4, 4)))])  # no background layer
    picture = tmp_path / "out-masks" / "background.png"  # named as a mask an earlier import wrote
    picture.parent.mkdir()
    Image.new("RGB", (64, 32), "white").save(picture)
    before = picture.read_bytes()
    (tmp_path / "art.yaml").write_text("background: {image: out-masks/background.png}\n")
    result = invoke("import", path, "-o", tmp_path / "out.yaml", "--overwrite")
    assert result.exit_code == 2, result.output
    assert f"{picture}: the output would overwrite the background picture of {path}" in result.output
    assert picture.read_bytes() == before
