"""benchmarks/gpu_smoke.py: the plan of the GPU smoke check, printed without loading anything."""

from __future__ import annotations

from pathlib import Path

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_smoke.py"


def test_dry_run_prints_the_plan_and_loads_no_model(capsys, tmp_path):
    smoke = load_script(SCRIPT, "gpu_smoke")
    out = tmp_path / "smoke.json"
    assert smoke.main(["--dry-run", "--only", "oom", "compile", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "sdxl full-random on cuda in float16, 1536x1024" in err and "checks: oom, compile" in err
    assert not out.exists()
