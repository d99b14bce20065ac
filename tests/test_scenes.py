"""Every file in scenes/ loads without problems or warnings and survives the scene_to_dict round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from semanticdraw_cli import defaults
from semanticdraw_cli.scene.rasterize import rasterize_mask
from semanticdraw_cli.scene.loader import load_scene, scene_from_dict, scene_to_dict, scene_warnings
from semanticdraw_cli.scene.schema import KEYS
from semanticdraw_cli.families import registry
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
SCENE_FILES = sorted((ROOT / "scenes").glob("*.y*ml"))


def test_there_are_example_scenes():
    assert {p.name for p in SCENE_FILES} >= {"irworobongdo.yaml", "two-subjects.yaml", "palette.yaml"}


@pytest.mark.parametrize("path", SCENE_FILES, ids=lambda p: p.name)
def test_scene_loads_cleanly_and_round_trips(path):
    scene = load_scene(path)
    assert scene_warnings(scene) == []
    data = scene_to_dict(scene)
    assert json.loads(json.dumps(data)) == data
    assert scene_from_dict(data, source=scene.source) == scene


def test_irworobongdo_is_the_papers_composition():
    scene = load_scene(ROOT / "scenes" / "irworobongdo.yaml")
    assert (scene.canvas.width, scene.canvas.height) == (1280, 768)
    assert scene.background.prompt == "clear deep blue sky"
    prompts = [r.prompt for r in scene.regions]
    assert prompts == ["summer mountains", "a giant waterfall", "a giant waterfall", "clean deep blue lake",
                       "a large tree", "a large tree", "the sun", "the moon"]  # + background: 9 pairs
    assert all(r.negative == "worst quality, bad quality, normal quality, cropped, framed" for r in scene.regions)
    assert scene.model.family == "sd15" and scene.model.accelerator.name == registry.family("sd15").accelerator
    masks = {r.name: rasterize_mask(r.mask, scene.canvas) >= 0.5 for r in scene.regions}

    def centre(name):
        ys, xs = np.nonzero(masks[name])
        return xs.mean() / 1280, ys.mean() / 768

    assert centre("sun")[0] < 0.5 > centre("sun")[1] and centre("moon")[0] > 0.5 > centre("moon")[1]
    assert masks["sun"].sum() < 0.02 * 1280 * 768  # small discs
    assert centre("waterfall-left")[0] < 0.5 < centre("waterfall-right")[0]
    assert centre("tree-left")[0] < 0.15 and centre("tree-right")[0] > 0.85
    assert centre("lake")[1] > 0.8 and masks["lake"][-1].all()  # along the bottom
    assert masks["mountains"][480].all() and not masks["mountains"][200].any()  # a band across the middle


def test_palette_asset_is_what_make_assets_draws():
    module = load_script(ROOT / "scenes" / "make_assets.py", "make_assets")
    from PIL import Image

    with Image.open(ROOT / "scenes" / "palette-layout.png") as committed:
        np.testing.assert_array_equal(np.asarray(committed.convert("RGB")), np.asarray(module.palette_layout()))


def test_scene_format_doc_covers_every_key_and_default():
    doc = (ROOT / "docs" / "scene-format.md").read_text(encoding="utf-8")
    for keys in KEYS.values():
        for key in keys:
            assert f"`{key}`" in doc, key
    for value in (defaults.SEED, defaults.COVER_ALPHA, defaults.MAX_BATCH, defaults.BOOTSTRAP_LEAK_SENSITIVITY,
                  defaults.MULTIDIFFUSION_GUIDANCE, defaults.MAX_REGIONS, defaults.LABEL_COLOR_TOLERANCE,
                  defaults.MAX_GRID, defaults.MASK_RESIZE_ASPECT_TOLERANCE):
        assert str(value) in doc, value
    for name, accelerator in registry.accelerators().items():
        assert name in doc and (accelerator.lora is None or accelerator.lora in doc)
    for family in registry.families().values():
        assert family.checkpoint in doc
