"""benchmarks/run.py: a results file written before `unet_calls` became `network_calls` still makes its table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def test_a_results_file_from_before_the_rename_makes_a_table():
    spec = importlib.util.spec_from_file_location("families_benchmark", SCRIPT)
    run = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = run  # its dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(run)
    finally:
        del sys.modules[spec.name]
    old = json.loads((SCRIPT.parent / "results" / "families-intel-xeon-processor-2c.json").read_text())
    assert "unet_calls" in old["rows"][0] and "network_calls" not in old["rows"][0]
    text = run.table(old)
    assert "| network calls |" in text and f"| {old['rows'][0]['unet_calls']:.0f} |" in text
