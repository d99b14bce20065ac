#!/usr/bin/env bash
# Issue 21's GPU smoke check: the CUDA-only paths no CPU test reaches (CUDA-event step timing, the same bits on
# a second render, max_batch auto and its memory probe, out-of-memory halving, model offload, --compile with
# CUDA graphs, a reference picture under both offloads), each checked once on the full-random SDXL preset
# (real architecture, random weights, built on the GPU: nothing downloaded).
# Sized for under 3 minutes on a lent H100 (GPU_SMOKE_SECONDS, default 175, caps the checks); unattended.
#
#   here:  bash benchmarks/fetch_wheels.sh        # diffusers, psd-tools and their missing deps into .whl/
#   there: bash benchmarks/gpu_smoke.sh           # from the repository root, carrying .whl
#
# One line per check ("gpu_smoke: ok     <check>: ..." or "gpu_smoke: FAILED <check>: ..."), the JSON
# (gpu-smoke.json) and the log in $OUT (default benchmarks/results). Exit 0 when every check passed, 1 otherwise
# (a check cut short by the time cap counts as failed; the rows before it stay in the JSON).
#
# CPU self-test of the script (no GPU; the CUDA-only checks say why they are skipped):
#   GPU_SMOKE_DEVICE=cpu GPU_SMOKE_PRESET=tiny GPU_SMOKE_DTYPE=float32 GPU_SMOKE_COMPILE_BACKEND=aot_eager \
#   OUT=/tmp/gpu-smoke bash benchmarks/gpu_smoke.sh
# and the plan alone: python benchmarks/gpu_smoke.py --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
budget=${GPU_SMOKE_SECONDS:-175}
device=${GPU_SMOKE_DEVICE:-cuda}
preset=${GPU_SMOKE_PRESET:-full-random}
dtype=${GPU_SMOKE_DTYPE:-float16}
backend=${GPU_SMOKE_COMPILE_BACKEND:-inductor}
out=${OUT:-benchmarks/results}
py=${PYTHON:-python3}
mkdir -p "$out"
json="$out/gpu-smoke.json"
log="$out/gpu-smoke.log"
rm -f "$json" "$log"
export SEMANTICDRAW_CACHE=${SEMANTICDRAW_CACHE:-/tmp/semanticdraw-cache} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1

say() { echo "gpu_smoke: $*" | tee -a "$log" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# 1. Packages: the lent image has torch and transformers; the rest comes as carried wheels (as gpu_check.sh).
if ! $py -c "import diffusers, psd_tools" 2>/dev/null; then
    compgen -G ".whl/*.whl" >/dev/null || fail "diffusers/psd-tools are missing and .whl/ holds no wheels: run benchmarks/fetch_wheels.sh where pip reaches PyPI, and carry .whl"
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || fail "installing the wheels in .whl/"
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
$py - "$device" <<'PY' 2>&1 | tee -a "$log" || fail "the environment (above)"
import sys
import diffusers, torch, transformers
print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}")
if sys.argv[1].startswith("cuda"):
    assert torch.cuda.is_available(), "no CUDA device is visible"
    free, total = torch.cuda.mem_get_info()
    print(f"{torch.cuda.get_device_name()}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
PY

# 2. The checks, in one process (one model build), under the time cap
left=$((budget - (SECONDS - started)))
((left > 20)) || fail "only $left s left for the checks"
status=0
timeout "$left" $py benchmarks/gpu_smoke.py --device "$device" --preset "$preset" --dtype "$dtype" \
    --compile-backend "$backend" --out "$json" 2>&1 | tee -a "$log" || status=$?
if ((status == 124)); then
    fail "cut at the ${budget} s cap; the checks that ended are in $json"
fi
((status == 0)) || fail "a check failed (see the lines above and $json)"
say "every check passed in $((SECONDS - started)) s; JSON: $json"
