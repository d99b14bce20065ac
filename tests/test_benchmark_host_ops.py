"""benchmarks/host_ops.py: the step loop's aten operations per step, counted with a free denoiser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "host_ops.py"

pytestmark = pytest.mark.slow


def test_a_step_is_a_constant_number_of_operations_whatever_the_batch_split(tmp_path):
    bench = load_script(SCRIPT, "host_ops_benchmark")
    out = tmp_path / "rows.json"
    assert bench.main(["--measure-only", str(out), "--canvas", "640x384", "--repeats", "1"]) == 0
    rows = json.loads(out.read_text())
    whole, split = rows["irworobongdo 640x384, max_batch all"], rows["irworobongdo 640x384, max_batch 8"]
    steps = len(whole["pairs_per_step"])
    assert len(whole["dispatched_ops_per_step"]) == steps and whole["host_seconds_per_step"] > 0
    assert 0 < whole["floor_seconds_per_step"]
    # the target is the host of a GPU (meta, groups whole); a CPU copies its windows through a view each
    assert max(whole["meta_ops_per_step"]) <= bench.TARGET_OPS and whole["meta_seconds_per_step"] > 0
    assert all(d <= a for d, a in zip(whole["dispatched_ops_per_step"], whole["all_ops_per_step"]))
    # gathering whole groups (as for CUDA), a pair costs no operation of its own: only extra calls do, a few each
    calls = -(-max(whole["pairs_per_step"]) // 8)
    assert max(split["meta_ops_per_step"]) - max(whole["meta_ops_per_step"]) <= 6 * calls



def test_with_a_controlnet_each_call_adds_the_same_operations_whatever_its_items(tmp_path):
    """`--control` (a whole-canvas tiny ControlNet) against the same scene without: on the meta device the
    ControlNet adds the same operations to every call, so splitting the step's 9 items into calls of 8 adds
    them once per call; crops cut item by item would add operations per item instead. Runs the benchmark's
    control path, which no other test reaches, and the plain scene to compare (10 s on the loaded 2-core machine)."""
    bench = load_script(SCRIPT, "host_ops_benchmark")
    rows = {}
    for flags in ([], ["--control"]):
        out = tmp_path / f"rows{len(flags)}.json"
        assert bench.main(["--measure-only", str(out), "--canvas", "640x384", "--repeats", "1", *flags]) == 0
        rows.update(json.loads(out.read_text()))
    ops = {name: max(row["meta_ops_per_step"]) for name, row in rows.items()}
    per_call = ops["irworobongdo 640x384 control, max_batch all"] - ops["irworobongdo 640x384, max_batch all"]
    calls = -(-max(rows["irworobongdo 640x384, max_batch all"]["pairs_per_step"]) // 8)
    assert calls > 1 and 0 < per_call
    assert ops["irworobongdo 640x384 control, max_batch 8"] - ops["irworobongdo 640x384, max_batch 8"] == calls * per_call
    assert ops["irworobongdo 640x384 control, max_batch all"] <= bench.TARGET_OPS
