"""The hires pass: pass 1 at canvas/scale, pass 2 painting over its upscale, rendered on the tiny preset."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli import hires
from semanticdraw_cli.cli.app import app
from semanticdraw_cli.render import Renderer, region_masks
from semanticdraw_cli.scene.loader import load_scene

pytestmark = pytest.mark.slow
runner = CliRunner()
SCENE = """version: 1
canvas: {width: 128, height: 96}
model: {checkpoint: tiny}
sampler: {seed: 5, tile: {size: 48, stride: 24}}
background: {prompt: a green field}
hires: {scale: 2, strength: STRENGTH}
regions:
  - {prompt: a red ball, mask: {rect: [16, 16, 56, 48]}, blur: 4}
  - {prompt: a blue box, mask: {ellipse: [100, 60, 20, 24]}}
"""


def write_scene(folder: Path, strength: float, name: str = "hires") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(SCENE.replace("STRENGTH", str(strength)))
    return path


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(device="cpu")


def test_pass_two_runs_the_end_of_its_schedule():
    steps = (0, 4, 12, 25, 37)
    assert hires.pass_two_steps(steps, 0.0) == ()
    assert hires.pass_two_steps(steps, 0.35) == (25, 37)  # ceil(1.75) steps
    assert hires.pass_two_steps(steps, 0.4) == (25, 37)
    assert hires.pass_two_steps(steps, 1.0) == steps


def test_pass_one_is_the_scene_at_canvas_over_scale_with_its_masks_and_blur(tmp_path):
    scene = load_scene(write_scene(tmp_path, 0.5))
    first = hires.pass_one_scene(scene, Renderer().cache)
    assert (first.canvas.width, first.canvas.height) == (64, 48) and first.hires is None
    assert [r.blur for r in first.regions] == [2.0, 0.5]
    ball = first.regions[0].mask.array  # (48, 64): the rect at half size, x 8..36, y 8..32
    assert ball.shape == (48, 64) and ball[8:32, 8:36].min() == 1.0 and ball.sum() == 28 * 24


def test_strength_0_gives_the_upscaled_first_pass_exactly(tmp_path, renderer):
    scene = load_scene(write_scene(tmp_path, 0))
    (result,) = renderer.render(scene)
    (first,) = renderer.render(hires.pass_one_scene(scene, renderer.cache))
    assert result.image.shape == (96, 128, 3) and first.image.shape == (48, 64, 3)
    assert (result.image == hires.resize(first.image, scene.canvas, "lanczos")).all()
    assert result.scene == scene and result.latent.shape == (4, 12, 16)
    assert result.report["network_calls"] == first.report["network_calls"] > 0


def test_pass_two_repaints_the_regions_and_reports_both_passes(tmp_path, renderer):
    scene = load_scene(write_scene(tmp_path, 0.4))
    (result,) = renderer.render(scene)
    (first,) = renderer.render(hires.pass_one_scene(scene, renderer.cache))
    upscaled = hires.resize(first.image, scene.canvas, "lanczos")
    assert result.image.shape == (96, 128, 3)
    assert np.abs(result.image.astype(int) - upscaled).mean() > 1  # painted over, not the upscale
    report = result.report
    one, two = report["hires"]["passes"]
    assert (one["canvas"], two["canvas"], report["canvas"]) == ([64, 48], [128, 96], [128, 96])
    assert (one["steps"], two["steps"]) == (5, 2)  # the sampler's 5 LCM steps, then the last ceil(0.4 × 5)
    assert report["network_calls"] == one["network_calls"] + two["network_calls"]
    assert two["network_calls"] > 0 and len(report["seconds"]["steps"]) == 7
    assert report["seconds"]["denoise"] == pytest.approx(one["seconds"]["denoise"] + two["seconds"]["denoise"])


def test_inspect_then_render_reproduces_a_hires_image_bit_exactly(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    result = runner.invoke(app, ["render", str(write_scene(tmp_path, 0.4)), "-o", str(first), "--quiet"])
    assert result.exit_code == 0, result.output
    (png,) = first.glob("*.png")
    shown = runner.invoke(app, ["inspect", str(png)])
    assert shown.exit_code == 0 and "hires:" in shown.stdout
    (tmp_path / "again.yaml").write_text(shown.stdout)
    result = runner.invoke(app, ["render", str(tmp_path / "again.yaml"), "-o", str(second), "--quiet"])
    assert result.exit_code == 0, result.output
    (again,) = second.glob("*.png")
    with Image.open(png) as a, Image.open(again) as b:
        assert a.size == (128, 96) and (np.asarray(a) == np.asarray(b)).all()


@pytest.mark.parametrize("change, key, message", [
    ("hires: {scale: 0.5}", "hires.scale", "must be between 1"),
    ("hires: {scale: 3}", "hires.scale", "makes pass 1 40×32, smaller than one tile (sampler.tile.size 48)"),
    ("hires: {strength: 2}", "hires.strength", "must be between 0 and 1"),
    ("hires: {steps: [3, 1]}", "hires.steps", "increasing indices"),
    ("hires: {upscaler: lanczoz}", "hires.upscaler", "did you mean 'lanczos'"),
    ("canvas: {width: 128, height: 40, wrap: y}", "canvas.wrap", "wrap y needs the canvas height to be at least "
                                                                 "one tile (sampler.tile.size 48), got 40"),
])
def test_bad_hires_or_wrap_exits_2_naming_it(tmp_path, change, key, message):
    text = SCENE.replace("hires: {scale: 2, strength: STRENGTH}", "")
    section = change.split(":")[0]
    text = text.replace("canvas: {width: 128, height: 96}", "") if section == "canvas" else text
    path = tmp_path / "bad.yaml"
    path.write_text(text + change + "\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert key in result.output and message in result.output and "Traceback" not in result.output


def test_each_image_of_a_hires_render_paints_over_its_own_first_pass(tmp_path, renderer):
    scene = load_scene(write_scene(tmp_path, 0.4), ["sampler.images=2"])
    results = renderer.render(scene)
    assert [r.seed for r in results] == [5, 6] and [r.report["image_index"] for r in results] == [0, 1]
    assert all(r.image.shape == (96, 128, 3) and r.scene == scene for r in results)
    assert np.abs(results[0].image.astype(int) - results[1].image).mean() > 1


def test_a_background_picture_comes_back_exactly_where_no_region_lies(tmp_path, renderer):
    original = np.random.default_rng(2).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(original).save(tmp_path / "base.png")
    text = write_scene(tmp_path, 0.4).read_text().replace("background: {prompt: a green field}",
                                                          "background: {image: base.png}")
    (tmp_path / "over.yaml").write_text(text)
    scene = load_scene(tmp_path / "over.yaml")
    (result,) = renderer.render(scene)
    uncovered = region_masks(scene).sum(axis=0) <= 0
    assert 0.2 < uncovered.mean() < 0.9
    assert (result.image[uncovered] == original[uncovered]).all()
    assert (result.image[~uncovered] != original[~uncovered]).any(axis=-1).mean() > 0.5
