"""`control:` entries in scene files: parsed at the top level and per region, refused with exit 2 naming the
entry before any model loads, written back into the scene dict, and listed among the files a scene reads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli.cli.app import app
from semanticdraw_cli.scene.dicts import scene_from_dict, scene_to_dict
from semanticdraw_cli.scene.loader import load_scene
from semanticdraw_cli.scene.reads import scene_reads

HEAD = "canvas: {width: 64, height: 48}\nmodel: {family: sd15, checkpoint: tiny}\n"


def write(folder: Path, text: str) -> Path:
    Image.new("RGB", (64, 48), "white").save(folder / "edges.png")
    Image.new("RGB", (96, 72), "white").save(folder / "edges-large.png")
    Image.new("RGB", (64, 64), "white").save(folder / "square.png")
    path = folder / "scene.yaml"
    path.write_text(HEAD + textwrap.dedent(text), encoding="utf-8")
    return path


def validate(path: Path):
    return CliRunner().invoke(app, ["validate", str(path)])


def test_entries_at_the_top_and_in_a_region_load_with_their_defaults(tmp_path):
    scene = load_scene(write(tmp_path, """\
        control: [{model: tiny, image: edges-large.png, weight: 0.5, start: 0.25}]
        regions:
          - {prompt: a fox, mask: {rect: [0, 0, 32, 48]}, control: [{model: tiny, image: edges.png}]}
          - {prompt: a hen, mask: {rect: [32, 0, 32, 48]}}
        """))
    (whole,) = scene.control
    assert (whole.model, whole.image, whole.weight, whole.start, whole.end) == (
        "tiny", tmp_path / "edges-large.png", 0.5, 0.25, 1.0)
    assert scene.regions[0].control[0].image == tmp_path / "edges.png" and scene.regions[1].control == ()
    again = scene_from_dict(scene_to_dict(scene), scene.source)
    assert again.control == scene.control and again.regions == scene.regions
    roles = {read.path: read.role for read in scene_reads(tmp_path / "scene.yaml", scene)}
    assert "control picture" in roles[tmp_path / "edges-large.png"]
    assert "region 'region1'" in roles[tmp_path / "edges.png"]


def test_a_scene_without_control_writes_no_control_key(tmp_path):
    scene = load_scene(write(tmp_path, "regions: [{prompt: a fox, mask: {rect: [0, 0, 32, 48]}}]\n"))
    assert "control" not in scene_to_dict(scene) and "control" not in scene_to_dict(scene)["regions"][0]


@pytest.mark.parametrize("text, key, message", [
    ("control: [{model: tiny, image: missing.png}]", "control[0].image", "file not found"),
    ("control: [{model: ./no-such-controlnet, image: edges.png}]", "control[0].model", "ControlNet not found"),
    ("control: [{model: tiny, image: square.png}]", "control[0].image", "aspect"),
    ("control: [{model: tiny, image: edges.png, start: 0.8, end: 0.2}]", "control[0].start", "start 0.8 is after end 0.2"),
    ("control: [{model: tiny, image: edges.png, weight: -1}]", "control[0].weight", "-1"),
    ("control: [{model: tiny}]", "control[0].image", "missing"),
    ("control: {model: tiny}", "control", "expected a list"),
    ("control: [{image: edges.png}]", "control[0].model", "missing"),
    ("control: [{model: tiny, image: edges.png, scale: 1}]", "control[0].scale", "unknown key"),
])
def test_bad_entries_exit_2_naming_the_entry(tmp_path, text, key, message):
    path = write(tmp_path, text + "\nregions: [{prompt: a fox, mask: {rect: [0, 0, 32, 48]}}]\n")
    result = validate(path)
    assert result.exit_code == 2, result.output
    assert key in result.output and message in result.output
    assert "Traceback" not in result.output


def test_a_regions_bad_entry_names_the_region(tmp_path):
    path = write(tmp_path, "regions: [{prompt: a fox, mask: {rect: [0, 0, 32, 48]}, "
                           "control: [{model: tiny, image: gone.png}]}]\n")
    result = validate(path)
    assert result.exit_code == 2 and "regions[0].control[0].image" in result.output and "gone.png" in result.output


@pytest.mark.parametrize("family", ["sd2", "klein"])
def test_a_family_without_controlnet_support_is_refused(tmp_path, family):
    path = tmp_path / "scene.yaml"
    write(tmp_path, "")
    path.write_text(f"canvas: {{width: 64, height: 48}}\nmodel: {{family: {family}}}\n"
                    "control: [{model: tiny, image: edges.png}]\n"
                    "regions: [{prompt: a fox, mask: {rect: [0, 0, 32, 48]}}]\n")
    result = validate(path)
    assert result.exit_code == 2 and f"the {family} family has no ControlNet support" in result.output
    assert "sd15, sdxl, sd3, flux" in result.output


@pytest.mark.parametrize("family", ["sd3", "flux", "sdxl"])
@pytest.mark.parametrize("text, key, message", [
    ("control: [{model: tiny, image: missing.png}]", "control[0].image", "file not found"),
    ("control: [{model: tiny, image: edges.png, start: 0.8, end: 0.2}]", "control[0].start", "start 0.8 is after end 0.2"),
    ("control: [{model: tiny, image: edges.png}, {model: small, image: edges.png}]", "control[1].model",
     "has no 'small' preset to build a ControlNet from"),
])
def test_bad_entries_exit_2_for_the_other_controlnet_families(tmp_path, family, text, key, message):
    path = write(tmp_path, text + "\nregions: [{prompt: a fox, mask: {rect: [0, 0, 32, 48]}}]\n")
    path.write_text(path.read_text().replace("family: sd15", f"family: {family}"))
    result = validate(path)
    assert result.exit_code == 2, result.output
    assert key in result.output and message in result.output
    assert "Traceback" not in result.output
