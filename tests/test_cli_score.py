"""`semanticdraw score` and `render --score` end to end on the tiny presets: JSON, the gate's exit code, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from drawings import chunk, png
from semanticdraw_cli import defaults
from semanticdraw_cli.cli.app import app
from semanticdraw_cli.score import GATE_EXIT_CODE

runner = CliRunner()
SCENE = {
    "version": 1,
    "canvas": {"width": 128, "height": 96},
    "sampler": {"seed": 3},
    "background": {"prompt": "a clear sky"},
    "regions": [
        {"name": "hill", "prompt": "a green hill", "mask": {"rect": [0, 48, 128, 48]}},
        {"name": "sun", "prompt": "the sun", "mask": {"ellipse": [96, 24, 16, 16]}},
    ],
}


def write_scene(folder, data=SCENE, name="small.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def without_seconds(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k != "seconds"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One tiny render with --score: (scene path, png, report, render --json summary)."""
    folder = tmp_path_factory.mktemp("score")
    scene = write_scene(folder)
    result = runner.invoke(app, ["render", str(scene), "--model", "tiny", "-o", str(folder / "out"), "--quiet",
                                 "--json", "--score", "--model-clip", "tiny"])
    assert result.exit_code == 0, result.output
    png = folder / "out" / "small-3.png"
    return scene, png, json.loads((folder / "out" / "small-3.json").read_text()), json.loads(result.stdout)


@pytest.mark.slow
def test_render_score_puts_scores_in_the_report_and_the_json_summary(rendered):
    _, _, report, summary = rendered
    scores = report["scores"]
    assert scores["clip"] == "tiny" and scores["passed"] is True
    assert [a["name"] for a in scores["regions"]] == ["hill", "sun"]
    assert scores["background"]["prompt"] == "a clear sky"
    assert scores["regions"][0]["box"] == [0, 48, 128, 96]  # the hill: the lower half
    assert all(0 <= a["score"] <= 100 and -1 <= a["cosine"] <= 1 for a in scores["regions"])
    assert summary[0]["scores"] == scores


@pytest.mark.slow
def test_score_of_the_png_gives_the_numbers_render_wrote(rendered):
    _, png, report, _ = rendered
    result = runner.invoke(app, ["score", str(png), "--model-clip", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data) == 1 and data[0]["image"] == str(png)
    assert without_seconds({k: v for k, v in data[0].items() if k != "image"}) == without_seconds(report["scores"])


@pytest.mark.slow
def test_score_prints_a_table_without_json(rendered):
    _, png, _, _ = rendered
    result = runner.invoke(app, ["score", str(png), "--model-clip", "tiny"])
    assert result.exit_code == 0, result.output
    assert "hill" in result.stdout and "a green hill" in result.stdout and "background" in result.stdout


@pytest.mark.slow
def test_score_below_min_score_exits_3_naming_every_region_and_its_score(rendered):
    _, png, report, _ = rendered
    result = runner.invoke(app, ["score", str(png), "--model-clip", "tiny", "--min-score", "100", "--json"])
    assert result.exit_code == GATE_EXIT_CODE == 3
    for area in report["scores"]["regions"]:
        assert f"{png}: {area['name']} scored {area['score']:.2f}, below its minimum 100" in result.stderr
    assert "background scored" not in result.stderr  # --min-score gates regions; the background has its own field
    data = json.loads(result.stdout)
    assert data[0]["passed"] is False and all(not a["passed"] for a in data[0]["regions"])


@pytest.mark.slow
def test_render_gate_names_only_the_region_below_and_still_writes_the_images(tmp_path):
    scene = write_scene(tmp_path)
    result = runner.invoke(app, ["render", str(scene), "--model", "tiny", "-o", str(tmp_path / "out"), "--quiet",
                                 "--model-clip", "tiny", "--min-score", "0", "--set", "regions[1].min_score=100", "--json"])
    assert result.exit_code == 3, result.output
    assert "sun scored" in result.stderr and "hill scored" not in result.stderr
    summary = json.loads(result.stdout)  # one document: the failure, listing the image written and scored
    assert summary["exit_code"] == 3 and "sun scored" in summary["error"] and summary["unfinished"] == []
    assert [entry["png"] for entry in summary["images"]] == [str(tmp_path / "out" / "small-3.png")]
    assert summary["images"][0]["scores"]["passed"] is False
    report = json.loads((tmp_path / "out" / "small-3.json").read_text())
    assert (tmp_path / "out" / "small-3.png").exists() and report["scores"]["passed"] is False
    assert [a["min_score"] for a in report["scores"]["regions"]] == [0.0, 100.0]


@pytest.mark.slow
def test_a_scene_threshold_turns_scoring_on_and_passes_at_zero(tmp_path):
    scene = write_scene(tmp_path, {**SCENE, "quality": {"min_region_score": 0}})
    result = runner.invoke(app, ["render", str(scene), "--model", "tiny", "-o", str(tmp_path), "--quiet",
                                 "--model-clip", "tiny"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "small-3.json").read_text())["scores"]["passed"] is True


@pytest.mark.slow
def test_score_against_a_given_scene(rendered, tmp_path):
    scene, png, report, _ = rendered
    plain = tmp_path / "plain.png"
    with Image.open(png) as image:
        image.save(plain)  # the same pixels, no embedded scene
    result = runner.invoke(app, ["score", str(plain), "--scene", str(scene), "--model-clip", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["regions"] == report["scores"]["regions"]


@pytest.mark.parametrize("clip", ["/no/such/clip", "nobody/no-such-clip-xyz"])
def test_missing_clip_exits_1_with_what_to_do(tmp_path, clip):
    scene = write_scene(tmp_path)
    Image.new("RGB", (128, 96)).save(tmp_path / "picture.png")
    result = runner.invoke(app, ["score", str(tmp_path / "picture.png"), "--scene", str(scene), "--model-clip", clip])
    assert result.exit_code == 1, result.output
    assert f"cannot load CLIP model {clip!r}" in result.stderr and "what to do" in result.stderr
    assert "--model-clip tiny" in result.stderr


def test_render_with_a_missing_clip_exits_1_before_rendering(tmp_path):
    scene = write_scene(tmp_path)
    result = runner.invoke(app, ["render", str(scene), "--model", "tiny", "-o", str(tmp_path / "out"), "--score",
                                 "--model-clip", "/no/such/clip"])
    assert result.exit_code == 1 and "cannot load CLIP model" in result.stderr
    assert not list((tmp_path / "out").glob("*"))  # the output folder is checked (created) first; nothing written


def test_score_of_a_foreign_png_without_a_scene_exits_2(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    result = runner.invoke(app, ["score", str(tmp_path / "plain.png"), str(tmp_path / "missing.png")])
    assert result.exit_code == 2
    assert "plain.png: no embedded scene" in result.stderr and "--scene" in result.stderr
    assert "file not found" in result.stderr and "missing.png" in result.stderr


def test_score_of_a_picture_of_another_size_exits_2(tmp_path):
    scene = write_scene(tmp_path)
    Image.new("RGB", (64, 64)).save(tmp_path / "small.png")
    result = runner.invoke(app, ["score", str(tmp_path / "small.png"), "--scene", str(scene)])
    assert result.exit_code == 2 and "is 64x64 but the scene's canvas is 128x96" in result.stderr


def test_score_refuses_a_picture_larger_than_any_canvas_from_its_header(tmp_path):
    scene = write_scene(tmp_path)
    huge = png(tmp_path / "huge.png", size=(16384, 16384))  # a header only: decoding it would take 768 MiB
    result = runner.invoke(app, ["score", str(huge), "--scene", str(scene)])
    assert result.exit_code == 2
    assert "huge.png: its header claims 16384×16384" in result.stderr and "at most 16,384 a side" in result.stderr


def test_score_refuses_a_png_of_more_chunks_than_the_limit_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_PNG_CHUNKS", 50)
    scene = write_scene(tmp_path)
    chunky = png(tmp_path / "chunky.png", *[chunk(b"zzZz", b"")] * 60, size=(128, 96))
    result = runner.invoke(app, ["score", str(chunky), "--scene", str(scene)])
    assert result.exit_code == 2 and "chunky.png: holds more than 50 PNG chunks" in result.stderr


@pytest.mark.parametrize("args", [["--min-score", "101"], ["--min-score", "5", "--no-score"]])
def test_bad_min_score_exits_2_before_loading(tmp_path, args):
    scene = write_scene(tmp_path)
    result = runner.invoke(app, ["render", str(scene), "-o", str(tmp_path / "out"), "--model-clip", "/no/such", *args])
    assert result.exit_code == 2, result.output
    assert "min_region_score" in result.stderr or "--no-score" in result.stderr


def test_score_has_help():
    result = runner.invoke(app, ["score", "--help"])
    assert result.exit_code == 0 and "--model-clip" in result.output and "--min-score" in result.output


def test_score_of_a_render_of_a_layered_drawing_asks_for_the_drawing(tmp_path):
    from semanticdraw_cli.outputs import write_png

    data = {**SCENE, "regions": [{"name": "fox", "prompt": "a fox", "mask": {"layer": "fox"}}]}
    write_png(tmp_path / "art-1.png", np.zeros((96, 128, 3), np.uint8), yaml.safe_dump(data), {"seed": 1})
    result = runner.invoke(app, ["score", str(tmp_path / "art-1.png")])
    assert result.exit_code == 2
    assert "art-1.png: its scene came from a layered drawing" in result.stderr and "--scene" in result.stderr


def test_score_with_a_bad_scene_exits_2_naming_it(tmp_path):
    scene = write_scene(tmp_path, {**SCENE, "quality": {"min_region_score": "high"}}, name="bad.yaml")
    Image.new("RGB", (128, 96)).save(tmp_path / "picture.png")
    result = runner.invoke(app, ["score", str(tmp_path / "picture.png"), "--scene", str(scene)])
    assert result.exit_code == 2 and "bad.yaml" in result.stderr and "quality.min_region_score" in result.stderr
