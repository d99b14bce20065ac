"""benchmarks/hires.py: the two scenes it compares, and a clean skip without real weights."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "hires.py"


@pytest.fixture(scope="module")
def bench():
    module = load_script(SCRIPT, "hires_benchmark")
    return module


def test_the_hires_scene_is_the_full_size_scene_with_a_second_pass(bench):
    args = argparse.Namespace(preset="tiny", width=2560, height=1536, scale=2.0, strength=0.35)
    full, hires = bench.build_scenes(args).values()
    assert (full.canvas.width, full.canvas.height) == (2560, 1536) and full.hires is None
    assert hires.hires.scale == 2.0 and hires.hires.steps == full.sampler.steps
    assert hires.regions == full.regions and hires.sampler == full.sampler
    assert full.regions[0].mask.coords != bench.load_scene(bench.IRWOROBONGDO).regions[0].mask.coords  # scaled


def test_missing_clip_weights_are_reported_and_nothing_is_rendered(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench.defaults, "CLIP_CHECKPOINT", "nobody/no-such-clip-xyz")
    out = tmp_path / "hires.json"
    assert bench.main(["--preset", "tiny", "--clip", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "hires: skipped, weights missing here" in err and "nobody/no-such-clip-xyz" in err
    assert not out.exists()
