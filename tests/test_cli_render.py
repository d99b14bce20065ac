"""`semanticdraw render` end to end on the tiny preset: real PNG, embedded scene, report, refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli.cli import _select_jobs, app
from semanticdraw_cli.outputs import read_embedded
from semanticdraw_cli.render import Renderer, render
from semanticdraw_cli.scene_loader import load_scene, scene_from_dict

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


@pytest.mark.parametrize("model", ["/no/such/folder", "nobody/no-such-model-xyz"])
def test_missing_model_exits_1_with_what_to_do(tmp_path, model):
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "--model", model, "-o", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "cannot load model" in result.output and model in result.output
    assert "what to do" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shard", ["0/2", "3/2", "x", "1/0"])
def test_bad_shard_exits_2(tmp_path, shard):
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "--shard", shard, "-o", str(tmp_path)])
    assert result.exit_code == 2 and "--shard" in result.output


def test_shards_are_disjoint_and_complete():
    scenes = [load_scene(SCENES / "two-subjects.yaml", ["sampler.images=3"]), load_scene(IRWOROBONGDO, ["sampler.images=4"])]
    everything = {(s.name, seed) for s, seeds in _select_jobs(scenes, None) for seed in seeds}
    assert len(everything) == 7
    for count in (1, 2, 3, 5):
        parts = [{(s.name, seed) for s, seeds in _select_jobs(scenes, (k, count)) for seed in seeds} for k in range(1, count + 1)]
        assert set().union(*parts) == everything
        assert sum(len(p) for p in parts) == len(everything)


@pytest.mark.slow
def test_default_plan_equals_reference_plan_on_irworobongdo_with_less_work():
    """The exact savings are free: same latent, fewer UNet batch items."""
    renderer = Renderer(device="cpu", dtype="float32")
    default = renderer.render(load_scene(IRWOROBONGDO, ["model.checkpoint=tiny"]))[0]
    reference = renderer.render(load_scene(IRWOROBONGDO, ["model.checkpoint=tiny", "sampler.plan=reference"]))[0]
    assert default.report["batch_items"] < reference.report["batch_items"] / 2
    assert default.report["pairs_active"] < reference.report["pairs_active"]
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
