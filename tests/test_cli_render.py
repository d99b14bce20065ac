"""`semanticdraw render` end to end on the tiny preset: real PNG, embedded scene, report, refusals."""

import contextlib
import dataclasses
import errno
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli.cli.app import app
from semanticdraw_cli.outputs import OutputError, read_embedded
from semanticdraw_cli.render import Renderer, RenderResult, render
from semanticdraw_cli.scene.types import Canvas, Tile
from semanticdraw_cli.scene.loader import load_scene, scene_from_dict

SCENES = Path(__file__).resolve().parent.parent / "scenes"
IRWOROBONGDO = SCENES / "irworobongdo.yaml"
REPORT_FIELDS = {
    "scene", "canvas", "method", "plan", "images_in_batch", "seconds", "unet_calls", "batch_items",
    "latent_pixels", "pairs_active", "pairs_total", "steps", "device", "dtype", "peak_memory_bytes",
    "versions", "seed", "image_index", "network", "flops", "oom_halvings", "padded_items",
}
runner = CliRunner()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("render")
    result = runner.invoke(app, ["render", str(IRWOROBONGDO), "--model", "tiny", "-o", str(out), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    return out, result


@pytest.mark.slow
def test_render_writes_png_with_round_tripping_scene_and_full_report(rendered):
    out, result = rendered
    png, report_file = out / "irworobongdo-2024.png", out / "irworobongdo-2024.json"
    with Image.open(png) as image:
        assert image.size == (1280, 768) and image.mode == "RGB"
        assert np.asarray(image).std() > 1.0  # a real picture, not a constant
    scene_yaml, params = read_embedded(png)
    embedded = scene_from_dict(yaml.safe_load(scene_yaml), source=IRWOROBONGDO)
    assert embedded == load_scene(IRWOROBONGDO, ["model.checkpoint=tiny"])
    assert params["seed"] == 2024
    report = json.loads(report_file.read_text())
    assert REPORT_FIELDS <= report.keys()
    assert {"load", "encode", "masks", "compile", "flops", "denoise", "steps", "decode", "save", "total"} <= report[
        "seconds"].keys()
    assert report["flops"]["denoise"] > 0 and report["flops"]["tflops_per_second"] > 0
    assert len(report["seconds"]["steps"]) == 5
    assert 0 < report["pairs_active"] < report["pairs_total"]
    summary = json.loads(result.stdout)
    assert summary[0]["png"] == str(png)


@pytest.mark.slow
def test_existing_outputs_are_refused_before_loading_a_model(rendered):
    out, _ = rendered
    before = (out / "irworobongdo-2024.png").stat().st_mtime_ns
    result = runner.invoke(app, ["render", str(IRWOROBONGDO), "--model", "does/not-exist", "-o", str(out)])
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.output and "irworobongdo-2024.png" in result.output
    assert (out / "irworobongdo-2024.png").stat().st_mtime_ns == before


@pytest.mark.slow
def test_inspect_prints_the_embedded_scene(rendered):
    out, _ = rendered
    result = runner.invoke(app, ["inspect", str(out / "irworobongdo-2024.png"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["scene"]["canvas"] == {"width": 1280, "height": 768}
    assert data["params"]["seed"] == 2024


def test_inspect_of_a_foreign_png_exits_2(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    result = runner.invoke(app, ["inspect", str(tmp_path / "plain.png")])
    assert result.exit_code == 2 and "no embedded scene" in result.output


def test_missing_hub_model_exits_1_with_what_to_do(tmp_path):
    model = "nobody/no-such-model-xyz"
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "--model", model, "-o", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "cannot load model" in result.output and model in result.output
    assert "what to do" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model, what", [("/no/such/folder", "folder"), ("/no/such/model.safetensors", "file")])
def test_missing_local_model_exits_2_before_loading(tmp_path, model, what):
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "--model", model, "-o", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"{what} not found: {model}" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shard", ["0/2", "3/2", "x", "1/0"])
def test_bad_shard_exits_2(tmp_path, shard):
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "--shard", shard, "-o", str(tmp_path)])
    assert result.exit_code == 2 and "--shard" in result.output


def shrunk(scene, factor: int):
    """The scene with canvas, masks and windows `factor` times smaller: the same windows and skipped pairs."""
    regions = tuple(
        dataclasses.replace(r, mask=dataclasses.replace(r.mask, coords=tuple(v / factor for v in r.mask.coords)))
        for r in scene.regions
    )
    tile = Tile(scene.sampler.tile.size // factor, scene.sampler.tile.stride // factor)
    return dataclasses.replace(scene, canvas=Canvas(scene.canvas.width // factor, scene.canvas.height // factor),
                               regions=regions, sampler=dataclasses.replace(scene.sampler, tile=tile))


@pytest.mark.slow
def test_default_plan_equals_reference_plan_on_irworobongdo_with_less_work():
    """The exact savings are free: same latent, fewer UNet batch items. At a quarter of the size (320×192,
    windows of 192 px) the layout keeps its three windows and the 30 of 135 pairs the plan skips."""
    renderer = Renderer(device="cpu", dtype="float32")
    scene = shrunk(load_scene(IRWOROBONGDO, ["model.checkpoint=tiny"]), 4)
    default = renderer.render(scene)[0]
    reference = renderer.render(dataclasses.replace(scene, sampler=dataclasses.replace(scene.sampler, plan="reference")))[0]
    assert default.report["pairs_total"] == reference.report["pairs_total"] == 5 * 3 * 9  # steps × windows × regions
    assert reference.report["pairs_active"] == reference.report["pairs_total"]
    assert default.report["pairs_active"] == 105 < reference.report["pairs_active"]
    assert default.report["batch_items"] < reference.report["batch_items"] / 2
    torch.testing.assert_close(default.latent, reference.latent, atol=1e-3, rtol=1e-4)


@pytest.mark.slow
def test_python_api_renders_a_scene_path(tmp_path):
    results = render(SCENES / "two-subjects.yaml", tmp_path, overrides=["model.checkpoint=tiny", "sampler.images=2"])
    assert [r.png.name for r in results] == ["two-subjects-7.png", "two-subjects-8.png"]
    assert results[0].image.shape == (512, 512, 3) and results[0].json.exists()


@pytest.mark.parametrize("option", [["--dtype", "float64"], ["--device", "gpu"], ["--peak-tflops", "0"]])
def test_bad_device_or_dtype_exits_2_before_loading(tmp_path, option):
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "-o", str(tmp_path), *option])
    assert result.exit_code == 2 and option[0] in result.output and option[1] in result.output


# --- the output planner, failures and the summary (no model is loaded) ---------------------------

NO_MODEL = ["--model", "does/not-exist"]  # a model load would fail with exit 1: exit 2 proves the check came first


def copy_scene(folder: Path, name: str = "x.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text((SCENES / "two-subjects.yaml").read_text())
    return folder / name


def test_same_named_scenes_in_one_call_are_refused_naming_both(tmp_path):
    a, b = copy_scene(tmp_path / "a"), copy_scene(tmp_path / "b")
    result = runner.invoke(app, ["render", str(a), str(b), *NO_MODEL, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert str(a) in result.output and str(b) in result.output and "x-7.png" in result.output
    result = runner.invoke(app, ["render", str(a), str(a), *NO_MODEL, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "given twice" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "/proc/x"])
def test_an_unwritable_output_folder_exits_2_before_loading(tmp_path, where):
    out = tmp_path / "taken"
    out.write_text("")
    out = out if where == "file" else Path(where)
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), *NO_MODEL, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert str(out) in result.output and ("not a folder" in result.output or "cannot create" in result.output)


def test_json_on_failure_is_one_json_object_with_the_exit_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("canvas: {width: 65, height: 48}\nregions: []\n")
    result = runner.invoke(app, ["render", str(bad), "-o", str(tmp_path), "--json"])
    summary = json.loads(result.stdout)
    assert result.exit_code == 2 and summary["exit_code"] == 2 and "canvas.width" in summary["error"]
    assert summary["images"] == []
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), *NO_MODEL, "-o", str(tmp_path), "--json"])
    summary = json.loads(result.stdout)
    assert result.exit_code == 1 and summary["exit_code"] == 1 and "cannot load model" in summary["error"]


def test_json_when_interrupted(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Renderer, "render", interrupted)
    scene = str(SCENES / "two-subjects.yaml")
    result = runner.invoke(app, ["render", scene, "-o", str(tmp_path), "--json"])
    assert result.exit_code == 130 and "interrupted" in result.output
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 130 and summary["unfinished"] == [{"scene": scene, "seeds": [7]}]


def model_free_stages(monkeypatch) -> None:
    """Renderer stages that give each seed an 8x8 picture without a model; everything after them is real."""
    def prepare(self, scene, seeds=None, on_phase=None):
        return SimpleNamespace(scene=scene, seeds=tuple(seeds), table=SimpleNamespace(steps=1))

    def steps(self, prepared, on_call=None):
        yield SimpleNamespace(stats=SimpleNamespace(step=0))

    def finish(self, prepared, final, states, on_phase=None):
        return [RenderResult(prepared.scene, seed, np.full((8, 8, 3), seed, np.uint8), None,
                             {"seconds": {"denoise": 0.0}, "unet_calls": 1, "versions": {},
                              "image_index": seed - prepared.scene.sampler.seed}) for seed in prepared.seeds]

    monkeypatch.setattr(Renderer, "prepare", prepare)
    monkeypatch.setattr(Renderer, "steps", steps)
    monkeypatch.setattr(Renderer, "finish", finish)


@pytest.mark.parametrize(("full_at", "failed"), [(5, "two-subjects-9.png"), (6, "two-subjects-9.json")])
def test_a_full_disk_names_the_file_and_the_json_lists_the_images_on_disk(tmp_path, monkeypatch, full_at, failed):
    """Three images in one batch; the disk fills at the 5th atomic write (image 3's picture) or the 6th (its report)."""
    from semanticdraw_cli import outputs

    real, writes = outputs.atomic_path, []

    @contextlib.contextmanager
    def filling(target):
        writes.append(target)
        with real(target) as temporary:
            yield temporary
            if len(writes) == full_at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    model_free_stages(monkeypatch)
    monkeypatch.setattr(outputs, "atomic_path", filling)
    scene, out = str(SCENES / "two-subjects.yaml"), tmp_path / "out"
    result = runner.invoke(app, ["render", scene, "--images", "3", "-o", str(out), "--json", "-q"])
    assert result.exit_code == 1, result.output
    assert f"cannot write {out / failed}: No space left on device" in result.stderr
    summary = json.loads(result.stdout)  # one document
    assert [Path(entry["png"]).name for entry in summary["images"]] == ["two-subjects-7.png", "two-subjects-8.png"]
    assert summary["unfinished"] == [{"scene": scene, "seeds": [9]}] and summary["exit_code"] == 1
    assert sorted(path.name for path in out.iterdir()) == [  # whole images only, no temporaries
        "two-subjects-7.json", "two-subjects-7.png", "two-subjects-8.json", "two-subjects-8.png"]


def test_an_empty_shard_says_so_and_lists_no_jobs(tmp_path):
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), *NO_MODEL, "--shard", "2/2",
                                 "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert "--shard 2/2" in result.stderr and "empty" in result.stderr and "1 (scene, seed) jobs" in result.stderr
    assert not (tmp_path / "out").exists()


def boom(*args, **kwargs):
    raise ValueError("boom")


def test_an_internal_error_is_one_line_and_exit_1_without_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(Renderer, "render", boom)
    monkeypatch.delenv("SEMANTICDRAW_DEBUG", raising=False)
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "-o", str(tmp_path), "--json"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "internal error: ValueError: boom" in result.stderr and "--debug" in result.stderr
    assert "Traceback" not in result.output
    assert json.loads(result.stdout)["error"].startswith("internal error: ValueError: boom")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_debug_shows_the_traceback(tmp_path, monkeypatch, how):
    monkeypatch.setattr(Renderer, "render", boom)
    args = ["render", str(SCENES / "two-subjects.yaml"), "-o", str(tmp_path)]
    if how == "option":
        monkeypatch.delenv("SEMANTICDRAW_DEBUG", raising=False)
        args = ["--debug", *args]
    else:
        monkeypatch.setenv("SEMANTICDRAW_DEBUG", "1")
    result = runner.invoke(app, args)
    assert isinstance(result.exception, ValueError) and str(result.exception) == "boom"


def test_summary_shows_whole_file_names_and_seeds(tmp_path, monkeypatch):
    long_name = "a-very-long-scene-name-that-a-table-column-would-cut-short-in-an-eighty-column-terminal"
    scene = copy_scene(tmp_path, long_name + ".yaml")
    report = {"seconds": {"total": 1.0, "load": 0.5, "denoise": 0.3, "decode": 0.1}, "unet_calls": 5,
              "batch_items": 10, "pairs_active": 3, "pairs_total": 4}

    def fake(self, scene, out_dir=None, on_step=None, seeds=None, **kwargs):
        return [RenderResult(scene, seed, None, None, report) for seed in seeds]

    def pretend_written(result, png, report_path):
        result.png, result.json = png, report_path

    monkeypatch.setattr(Renderer, "render", fake)
    monkeypatch.setattr("semanticdraw_cli.job_loop.write_result", pretend_written)
    result = runner.invoke(app, ["render", str(scene), "--images", "2", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for seed in (7, 8):
        assert f"{long_name}-{seed}.png" in result.stderr
        assert any(f"{long_name}-{seed}.png" in line and f" {seed} " in line for line in result.stderr.splitlines())


def test_python_api_refuses_existing_outputs_before_loading(tmp_path):
    (tmp_path / "two-subjects-7.png").write_bytes(b"precious")
    with pytest.raises(OutputError, match="refusing to overwrite existing outputs: two-subjects-7.png"):
        render(SCENES / "two-subjects.yaml", tmp_path, overrides=["model.checkpoint=does/not-exist"])
    with pytest.raises(OutputError, match="two-subjects-7.png"):
        Renderer().render(str(SCENES / "two-subjects.yaml"), tmp_path)  # a path, not only a Scene
    assert (tmp_path / "two-subjects-7.png").read_bytes() == b"precious"


@pytest.mark.slow
def test_long_phases_report_progress(tmp_path):
    scene = load_scene(SCENES / "two-subjects.yaml", ["model.checkpoint=tiny", "canvas.width=128", "canvas.height=128"])
    phases = []
    Renderer(device="cpu", dtype="float32").render(scene, tmp_path, on_phase=lambda *phase: phases.append(phase))
    assert phases[0] == ("preparing masks", 0, None)
    assert phases[1] in (("loading the model", 0, None), ("building the tiny preset (first use only)", 0, None))
    assert ("decoding", 1, 1) in phases and phases[-1] == ("writing", 0, None)


def test_every_seed_used_must_fit_in_64_bits_before_loading(tmp_path):
    largest = str(2**64 - 1)
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "--seed", largest, "--images", "2",
                                 "-o", str(tmp_path)])
    assert result.exit_code == 2 and "past the largest seed" in result.output, result.output
    assert list(tmp_path.iterdir()) == []
    validate = runner.invoke(app, ["validate", str(SCENES / "two-subjects.yaml"), "--set", f"sampler.seed={largest}"])
    assert validate.exit_code == 0, validate.output


def test_a_device_this_machine_lacks_exits_2_before_loading(tmp_path):
    from semanticdraw_cli.devices import mps_available

    if mps_available():
        pytest.skip("MPS is available here")
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "-o", str(tmp_path), "--device", "mps"])
    assert result.exit_code == 2 and "--device mps: MPS (Apple GPU) is not available here" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_quiet_render_prints_nothing_on_stderr(tmp_path):
    """transformers printed two "requires torchvision" notes on every model load, --quiet or not. It prints
    each once per process, so only a fresh process shows them."""
    import os
    import subprocess
    import sys

    scene = tmp_path / "s.yaml"
    scene.write_text("canvas: {width: 64, height: 64}\nregions: [{prompt: a fox, mask: {rect: [0, 0, 32, 64]}}]\n")
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "semanticdraw_cli", "render", str(scene), "--model", "tiny", "-o",
                           str(tmp_path), "--quiet", "--device", "cpu"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
    assert (tmp_path / "s-2024.png").is_file()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_render_never_writes_over_a_file_the_scene_reads(tmp_path, overwrite):
    mask = tmp_path / "fox-5.png"  # named as the scene's first output
    Image.new("L", (64, 64), 255).save(mask)
    before = mask.read_bytes()
    scene = tmp_path / "fox.yaml"
    scene.write_text("canvas: {width: 64, height: 64}\nsampler: {seed: 5}\n"
                     "regions: [{name: fox, prompt: a fox, mask: fox-5.png}]\n")
    result = runner.invoke(app, ["render", str(scene), "--model", "tiny", "-o", str(tmp_path), *overwrite])
    assert result.exit_code == 2, result.output
    assert f"{mask}: the output would overwrite the mask of region 'fox' in {scene}" in result.output
    assert mask.read_bytes() == before and not (tmp_path / "fox-5.json").exists()
