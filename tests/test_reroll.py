"""Re-roll one region and keep the rest: `render --from IMAGE --reroll NAME`, end to end with the tiny preset."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli.cli.app import app
from semanticdraw_cli.cli.reroll import differences
from semanticdraw_cli.render import region_masks
from semanticdraw_cli.scene.loader import load_scene

runner = CliRunner()
SCENE = ("canvas: {width: 128, height: 96}\nsampler: {seed: 7}\nbackground: {prompt: a quiet harbour}\n"
         "regions:\n  - {name: boat, prompt: a red boat, mask: {rect: [8, 16, 48, 56]}}\n"
         "  - {name: tower, prompt: a lighthouse, mask: {rect: [80, 8, 40, 80]}}\n")


def run(*args: str):
    return runner.invoke(app, ["render", *args, "--model", "tiny", "-q"])


def pixels(png: Path) -> np.ndarray:
    with Image.open(png) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture()
def first(tmp_path_factory):
    """A scene and its plain render, shared: (folder, scene file, image)."""
    folder = tmp_path_factory.mktemp("reroll")
    scene = folder / "harbour.yaml"
    scene.write_text(SCENE)
    result = run(str(scene), "-o", str(folder / "first"))
    assert result.exit_code == 0, result.output
    return folder, scene, folder / "first" / "harbour-7.png"


@pytest.mark.slow
def test_reroll_keeps_every_pixel_outside_the_region_and_inspect_renders_it_again(first):
    folder, scene, image = first
    result = run(str(scene), "--from", str(image), "--reroll", "boat", "-o", str(folder / "again"))
    assert result.exit_code == 0, result.output
    rerolled = folder / "again" / "harbour-7.png"
    before, after = pixels(image), pixels(rerolled)
    boat = region_masks(load_scene(scene))[0] > 0  # (H, W) the boat's blurred mask
    assert np.array_equal(after[~boat], before[~boat])
    assert (after[boat] != before[boat]).any(axis=-1).mean() > 0.5
    full = json.loads((folder / "first" / "harbour-7.json").read_text())["batch_items"]  # one call a step here
    assert json.loads((folder / "again" / "harbour-7.json").read_text())["batch_items"] <= 0.5 * full

    shown = runner.invoke(app, ["inspect", str(rerolled)])
    assert shown.exit_code == 0, shown.output
    (folder / "shown.yaml").write_text(shown.output)
    assert "seed: 8" in shown.output  # the boat's new seed: the image's plus one
    result = run(str(folder / "shown.yaml"), "-o", str(folder / "shown"))
    assert result.exit_code == 0, result.output
    assert np.array_equal(pixels(folder / "shown" / "shown-7.png"), after)


@pytest.fixture()
def drawn(tmp_path):
    """A scene and a picture that embeds it, written without a render: (folder, scene file, image)."""
    import yaml

    from semanticdraw_cli.outputs import write_png
    from semanticdraw_cli.scene.dicts import scene_to_dict

    scene = tmp_path / "harbour.yaml"
    scene.write_text(SCENE)
    image = tmp_path / "harbour-7.png"
    scene_yaml = yaml.safe_dump(scene_to_dict(load_scene(scene)), sort_keys=False)
    write_png(image, np.zeros((96, 128, 3), np.uint8), scene_yaml, {"seed": 7, "image_index": 0})
    return tmp_path, scene, image


def test_an_unknown_region_exits_2_naming_it(drawn):
    folder, scene, image = drawn
    result = run(str(scene), "--from", str(image), "--reroll", "boat,ship", "-o", str(folder / "x"))
    assert result.exit_code == 2
    assert "'ship'" in result.output and "boat, tower" in result.output


def test_an_image_of_another_scene_exits_2_naming_what_differs(drawn):
    folder, _, image = drawn
    other = folder / "other.yaml"
    other.write_text(SCENE.replace("a lighthouse", "a windmill"))
    result = run(str(other), "--from", str(image), "--reroll", "boat", "-o", str(folder / "x"))
    assert result.exit_code == 2
    assert "regions[1].prompt" in result.output and "another scene" in result.output


def test_reroll_without_from_exits_2(drawn):
    folder, scene, _ = drawn
    result = run(str(scene), "--reroll", "boat", "-o", str(folder / "x"))
    assert result.exit_code == 2 and "--from" in result.output


def test_differences_leave_out_the_rerolled_regions_and_the_seeds():
    scene = {"sampler": {"seed": 1, "steps": [0]}, "regions": [{"name": "a", "prompt": "x"}, {"name": "b", "prompt": "y"}]}
    image = {"sampler": {"seed": 9, "steps": [0]}, "regions": [{"name": "a", "prompt": "z", "seed": 3},
                                                              {"name": "b", "prompt": "y", "seed": 4}]}
    assert differences(scene, image, ["a"]) == []
    assert differences(scene, image, ["b"]) == ["regions[0].prompt"]


def test_differences_leave_out_the_preview_decoder():
    """An image rendered without `model.preview_decoder` is re-rolled from a scene that has one, and back."""
    scene = {"model": {"family": "sd15", "preview_decoder": "tiny-ae"}, "regions": [{"name": "a", "prompt": "x"}]}
    image = {"model": {"family": "sd15"}, "regions": [{"name": "a", "prompt": "x"}]}
    assert differences(scene, image, []) == [] and differences(image, scene, []) == []
    assert differences({**scene, "model": {"family": "sdxl"}}, image, []) == ["model.family"]
