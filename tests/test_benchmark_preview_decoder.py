"""benchmarks/preview_decoder.py: one run on the tiny preset writes both decoders' times and their ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "preview_decoder.py"

pytestmark = pytest.mark.slow


def test_a_run_times_both_decoders_of_each_size(tmp_path):
    bench = load_script(SCRIPT, "preview_decoder_benchmark")
    out = tmp_path / "preview.json"
    assert bench.main(["--preset", "tiny", "--sizes", "64x48", "128x64", "--repeats", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert list(result["rows"]) == ["64x48", "128x64"]
    for row in result["rows"].values():
        assert [len(times) for times in row["repeat_seconds"].values()] == [2, 2]
        assert row["tiny_over_full"] == pytest.approx(row["tiny_autoencoder_seconds"] / row["full_vae_seconds"])
    assert result["machine"]["cores"] and result["dtype"] == "float32"
