"""Painting over a picture and layered drawings, rendered end to end with the tiny preset."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli.cli.app import app
from semanticdraw_cli.render import region_masks
from semanticdraw_cli.scene.loader import load_scene
from drawings import blob, disc, layer, make

pytestmark = pytest.mark.slow
runner = CliRunner()
SIZE = (128, 96)


def picture() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)


def render(scene_path: Path, out: Path) -> np.ndarray:
    result = runner.invoke(app, ["render", str(scene_path), "--model", "tiny", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    (png,) = out.glob("*.png")
    with Image.open(png) as image:
        assert image.size == SIZE
        return np.asarray(image.convert("RGB"))


def assert_untouched_pixels_kept(scene_path: Path, rendered: np.ndarray, original: np.ndarray) -> None:
    covered = region_masks(load_scene(scene_path)).sum(axis=0) > 0  # (H, W)
    assert 0.1 < covered.mean() < 0.9
    assert (rendered[~covered] == original[~covered]).all()
    assert (rendered[covered] != original[covered]).any(axis=-1).mean() > 0.5  # the regions were painted


def test_yaml_background_image_keeps_untouched_pixels_exactly(tmp_path):
    original = picture()
    Image.fromarray(original).save(tmp_path / "base.png")
    scene = tmp_path / "over.yaml"
    scene.write_text(
        "canvas: {width: 128, height: 96}\n"
        "background: {image: base.png}\n"
        "regions:\n"
        "  - {prompt: a red boat, mask: {rect: [16, 16, 48, 40]}}\n"
        "  - {prompt: a lighthouse, mask: {ellipse: [96, 60, 20, 24]}}\n"
    )
    assert_untouched_pixels_kept(scene, render(scene, tmp_path / "out"), original)


@pytest.mark.parametrize("kind", ["psd", "ora"])
def test_layered_drawing_renders_over_its_background_layer(tmp_path, kind):
    original = picture()
    specs = [
        layer("background", Image.fromarray(original).convert("RGBA")),
        layer("fox: a red fox", disc((40, 40)), left=12, top=20),
        layer("a large tree", blob((24, 60), color=(0, 200, 0)), left=90, top=20),
    ]
    drawing = make(kind, tmp_path / "art", SIZE, specs)
    scene = load_scene(drawing)
    assert [r.prompt for r in scene.regions] == ["a red fox", "a large tree"]
    assert_untouched_pixels_kept(drawing, render(drawing, tmp_path / "out"), original)
