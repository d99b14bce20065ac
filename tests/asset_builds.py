"""Small scenes for the CI asset-build tests: two 64x64 scenes on the tiny preset, each reading its own mask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli.cli.app import app

SCENE = """version: 1
canvas: {{width: 64, height: 64}}
model: {{checkpoint: tiny}}
sampler: {{seed: 5}}
background: {{prompt: a blue sky}}
regions:
  - name: {name}
    prompt: {prompt}
    mask: {{image: {mask}}}
"""
runner = CliRunner()


def write_mask(path: Path, box: tuple[int, int, int, int]) -> None:
    """A 64x64 mask, white inside `box` (x0, y0, x1, y1)."""
    pixels = np.zeros((64, 64), np.uint8)
    x0, y0, x1, y1 = box
    pixels[y0:y1, x0:x1] = 255
    Image.fromarray(pixels).save(path)


def write_scenes(folder: Path) -> list[Path]:
    """scenes/a.yaml reads a.png, scenes/b.yaml reads b.png; returns the two scene files."""
    scenes = folder / "scenes"
    scenes.mkdir(parents=True, exist_ok=True)
    write_mask(scenes / "a.png", (8, 8, 40, 40))
    write_mask(scenes / "b.png", (24, 16, 56, 48))
    (scenes / "a.yaml").write_text(SCENE.format(name="sun", prompt="a red sun", mask="a.png"))
    (scenes / "b.yaml").write_text(SCENE.format(name="fox", prompt="a fox", mask="b.png"))
    return [scenes / "a.yaml", scenes / "b.yaml"]


def invoke(*args: object):
    """The CLI in this process, with every argument as text."""
    return runner.invoke(app, [str(arg) for arg in args])


def json_entries(result) -> list[dict]:
    return json.loads(result.stdout)
