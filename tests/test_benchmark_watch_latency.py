"""benchmarks/watch_latency.py: its scene loads with every mask as a file, and its table reads a result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "watch_latency.py"
RESULTS = SCRIPT.parent / "results"


@pytest.fixture(scope="module")
def latency():
    module = load_script(SCRIPT, "watch_latency_benchmark")
    return module


def test_the_scene_is_irworobongdo_with_mask_files(latency, tmp_path):
    from semanticdraw_cli.scene.loader import load_scene

    scene = load_scene(latency.write_scene(tmp_path, "tiny", 320, (192, 96)))
    assert (scene.canvas.width, scene.canvas.height) == (320, 192) and len(scene.regions) == 8
    assert all(region.mask.kind == "image" and region.mask.path.is_file() for region in scene.regions)
    assert {latency.PROMPT_REGION, latency.MASK_REGION} <= {region.name for region in scene.regions}


def test_the_committed_results_print_as_a_table(latency):
    for path in RESULTS.glob("watch-latency-*.json"):
        text = latency.table(json.loads(path.read_text()))
        assert "| watch: prompt edit |" in text and "| watch: mask edit |" in text, path
