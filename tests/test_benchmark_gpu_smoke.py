"""benchmarks/gpu_smoke.py: the plan of the GPU smoke check, printed without loading anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_smoke.py"


def test_dry_run_prints_the_plan_and_loads_no_model(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    out = tmp_path / "smoke.json"
    assert smoke.main(["--dry-run", "--only", "oom", "compile", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "sdxl full-random on cuda in float16, 1536x1024" in err and "checks: oom, compile" in err
    assert not out.exists()
