#!/usr/bin/env bash
# The GPU check of issue 4, sized for a lent device's 15-minute budget: run on the device machine from
# the repository root, e.g. with the device tool: `bash benchmarks/gpu_check.sh`. Writes JSON under
# $OUT (or benchmarks/results). Building the full-random preset (SD1.5 architecture, random weights,
# about 4 GB) takes a few minutes of CPU time before the first render: it is cached in
# $SEMANTICDRAW_CACHE.
set -euo pipefail
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
python -m pip install --quiet -e . 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# Default plan, reference plan, regions plan, MD + LCM and MD (1 measured DDIM step, extrapolated to 50),
# 2 timed repeats each after a warm-up: the comparison the issue asks for, in one process.
python benchmarks/run.py --workload gpu-full --repeats 2 --md-steps 1 --out "$out/gpu-full.json"
