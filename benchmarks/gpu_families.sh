#!/usr/bin/env bash
# GPU timing of the real SDXL and FLUX.1-schnell architectures (full-random presets: random weights, built
# straight on the GPU, nothing downloaded or written), default plan against the reference plan, on the
# Irworobongdo layout stretched to the canvas. Run from the repository root on a CUDA machine, unattended:
#   bash benchmarks/gpu_families.sh            # JSON under $OUT (or benchmarks/results)
# Sized for a lent device's 15 minutes on an H100 (estimate, not measured here: about 2 min for SDXL, 5 min
# for FLUX including building its 17 B parameters); needs about 40 GB of GPU memory for FLUX in bfloat16.
# Each row's load_seconds is the time to build the model on the GPU.
set -euo pipefail
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
python -m pip install --quiet -e . 2>/dev/null || true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
# SDXL + Lightning (4 steps, float16), 1024×1024: default plan and reference plan, 2 timed repeats each.
python benchmarks/run.py --workload gpu-sdxl --repeats 2 --out "$out/gpu-sdxl.json"
# FLUX.1-schnell (4 steps, bfloat16): 1024×1024 and 2048×1024 (two 1024 px windows), default and reference
# plan, one timed run each after the warm-up (the model is built once for all four rows).
python benchmarks/run.py --workload gpu-flux --repeats 1 --out "$out/gpu-flux.json"
