"""benchmarks/host_ops.py: the step loop's aten operations per step, counted with a free denoiser."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "host_ops.py"

pytestmark = pytest.mark.slow


def test_a_step_is_a_constant_number_of_operations_whatever_the_batch_split(tmp_path):
    spec = importlib.util.spec_from_file_location("host_ops_benchmark", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
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
