#!/usr/bin/env bash
# Issue 15's GPU check: one unattended command that fits a 10-minute call on a lent, offline GPU machine,
# building the full-random preset included (benchmarks/README.md, "GPU check").
#
#   here:  bash benchmarks/fetch_wheels.sh        # diffusers, psd-tools and their missing deps into .whl/
#   there: bash benchmarks/gpu_check.sh           # from the repository root, carrying .whl
#
# It installs the carried wheels into /tmp/site, builds the `full-random` preset (the SD1.5 architecture with
# random weights), then renders Irworobongdo at 1280x768 in float16 with each speed lever (default with
# max_batch auto, max_batch 8, fuse_qkv, channels_last, the reference plan, --images 8, then --compile and
# --compile with every lever in processes of their own) and prints one table. JSON and the log land in $OUT
# (default benchmarks/results). Any failure of the required rows stops it with exit 1 and the line
# "gpu_check: FAILED: ..."; the last, optional row (a second compile) only warns when it cannot finish.
#
# CPU self-test of the script itself (no GPU):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_PRESET=tiny GPU_CHECK_CANVAS=640x384 GPU_CHECK_REPEATS=1 \
#   GPU_CHECK_COMPILE_BACKEND=aot_eager OUT=/tmp/gpu-check bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
budget=${GPU_CHECK_SECONDS:-570}  # stop before the call's 600 s limit
device=${GPU_CHECK_DEVICE:-cuda}
preset=${GPU_CHECK_PRESET:-full-random}
canvas=${GPU_CHECK_CANVAS:-1280x768}
repeats=${GPU_CHECK_REPEATS:-3}
backend=${GPU_CHECK_COMPILE_BACKEND:-inductor}
out=${OUT:-benchmarks/results}
py=${PYTHON:-python3}
mkdir -p "$out"
json="$out/gpu-speed.json"
log="$out/gpu-check.log"
rm -f "$json" "$log"
export SEMANTICDRAW_CACHE=${SEMANTICDRAW_CACHE:-/tmp/semanticdraw-cache} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1

say() { echo "gpu_check: $*" | tee -a "$log" >&2; }
left() { echo $((budget - (SECONDS - started))); }
show_table() { [[ -s $json ]] && $py benchmarks/levers.py --table "$json" | tee "$out/gpu-speed.md"; return 0; }
fail() { say "FAILED: $*"; show_table || true; exit 1; }

# 1. Packages: the image has torch and transformers; the rest of what we need comes as carried wheels.
if ! $py -c "import diffusers, psd_tools" 2>/dev/null; then
    compgen -G ".whl/*.whl" >/dev/null || fail "diffusers/psd-tools are missing and .whl/ holds no wheels: run benchmarks/fetch_wheels.sh where pip reaches PyPI, and carry .whl"
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || fail "installing the wheels in .whl/"
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
$py - "$device" <<'EOF' 2>&1 | tee -a "$log" || fail "the environment (above)"
import sys
import diffusers, psd_tools, torch, transformers
import semanticdraw_cli
print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
      f"semanticdraw {semanticdraw_cli.__version__} from {semanticdraw_cli.__file__}")
if sys.argv[1].startswith("cuda"):
    assert torch.cuda.is_available(), "no CUDA device is visible"
    free, total = torch.cuda.mem_get_info()
    print(f"{torch.cuda.get_device_name()}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free")
EOF

# 2. The preset: built once into $SEMANTICDRAW_CACHE (minutes of CPU for full-random)
t=$SECONDS
$py -c "from semanticdraw_cli.families.presets import ensure_preset; print(ensure_preset('sd15', '$preset'))" \
    2>&1 | tee -a "$log" || fail "building the $preset preset"
say "preset $preset ready in $((SECONDS - t)) s; $(left) s left"

# 3. The rows: eager levers first, then each compiled group in its own process (a crash keeps the rows before)
measure() {
    local group=$1
    (($(left) > 30)) || fail "no time left for the $group rows"
    timeout "$(left)" $py benchmarks/levers.py --group "$group" --out "$json" --device "$device" --preset "$preset" \
        --canvas "$canvas" --repeats "$repeats" --compile-backend "$backend" 2>&1 | tee -a "$log"
}
measure eager || fail "the eager rows"
measure compile || fail "the --compile row"
if (($(left) > 240)); then  # optional: a second compile; cut short, the rows above still stand
    measure compile-all || say "WARNING: the --compile + fuse_qkv + channels_last row did not finish (see the log)"
else
    say "skipped --compile + fuse_qkv + channels_last: $(left) s left, a compile takes minutes"
fi
$py - "$json" <<'EOF' || fail "the JSON misses rows"
import json, sys
rows = {r["row"] for r in json.load(open(sys.argv[1]))["rows"]}
needed = {"default (max_batch auto)", "max_batch 8", "plan: reference", "--images 8", "--compile"}
assert needed <= rows, f"missing rows: {sorted(needed - rows)}"
EOF
show_table
say "done in $((SECONDS - started)) s; JSON: $json"
