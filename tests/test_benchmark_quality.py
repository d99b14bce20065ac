"""benchmarks/quality.py: skips cleanly without real weights; on presets it runs the paper's table end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quality.py"


@pytest.fixture(scope="module")
def quality():
    module = load_script(SCRIPT, "quality_benchmark")
    return module


def test_missing_weights_are_reported_and_nothing_is_rendered(quality, tmp_path, capsys):
    out = tmp_path / "quality.json"
    assert quality.main(["--model-clip", "nobody/no-such-clip-xyz", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "quality: skipped, weights missing here" in err and "nobody/no-such-clip-xyz" in err and "what to do" in err
    assert not out.exists()


def test_the_three_methods_are_the_papers(quality):
    scenes = {name: quality.build_scene("tiny", sets, 7, 2, 0.5) for name, sets in quality.METHODS.items()}
    assert {name: s.sampler.method for name, s in scenes.items()} == {
        "semanticdraw": "semanticdraw", "MD + LCM": "multidiffusion", "MD": "multidiffusion"}
    assert [s.model.accelerator.name for s in scenes.values()] == ["lcm", "lcm", "none"]
    assert scenes["MD"].sampler.grid == 50 and len(scenes["MD"].sampler.steps) == 50
    assert (scenes["MD"].canvas.width, scenes["MD"].canvas.height) == (640, 384)
    assert scenes["semanticdraw"].sampler.images == 2 and scenes["semanticdraw"].sampler.seed == 7


@pytest.mark.slow
def test_presets_run_the_table_end_to_end(quality, tmp_path, capsys):
    out = tmp_path / "quality.json"
    argv = ["--model", "tiny", "--model-clip", "tiny", "--scale", "0.25", "--seeds", "1", "--methods", "semanticdraw",
            "--device", "cpu", "--out", str(out)]
    assert quality.main(argv) == 0
    result = json.loads(out.read_text())
    row = result["methods"]["semanticdraw"]
    assert row["images"] == 1 and len(row["regions"]) == 8 and 0 <= row["clip_fg"] <= 100
    assert row["clip_bg"] == row["per_image"][0]["clip_bg"]
    assert "| semanticdraw | 1 |" in capsys.readouterr().out
