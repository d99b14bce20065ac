"""Issue 15's speed levers, one row each on the same scene, model and seed: what `gpu_check.sh` runs.

    python benchmarks/levers.py --device cuda --preset full-random --group eager --out OUT.json
    python benchmarks/levers.py --device cuda --preset full-random --group compile --out OUT.json  # adds rows
    python benchmarks/levers.py --table OUT.json

Irworobongdo at 1280×768 (tile 768, stride 384). Each row gets one warm-up render (it compiles, probes the
batch size, counts FLOPs); then `--repeats` rounds of one timed render per row, interleaved so that a busy
neighbour slows every row alike, and the median. OUT.json is rewritten after every round, so a run cut short
keeps what it measured. A group's rows run in one process; `gpu_check.sh` gives each compiled group its own.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

import run  # benchmarks/run.py: scenes, measuring, machine facts

GROUPS = {  # group -> rows (name, overrides); the first row of the first group is the baseline of the ratios
    "eager": (
        ("default (max_batch auto)", ()),
        ("max_batch 8", ("sampler.max_batch=8",)),
        ("fuse_qkv", ("sampler.fuse_qkv=true",)),
        ("channels_last", ("sampler.channels_last=true",)),
        ("plan: reference", ("sampler.plan=reference",)),
        ("--images 8", ("sampler.images=8",)),
    ),
    "compile": (("--compile", ("sampler.compile=true",)),),
    "compile-all": (("--compile + fuse_qkv + channels_last",
                     ("sampler.compile=true", "sampler.fuse_qkv=true", "sampler.channels_last=true")),),
}
COLUMNS = ("row", "batch", "calls", "compile s", "denoise s", "decode s", "total s", "s/image", "images/s",
           "TFLOP/s", "peak TFLOP/s", "% peak", "× default")


def measure_rows(args: argparse.Namespace) -> None:
    import torch

    from semanticdraw_cli import defaults
    from semanticdraw_cli.render import Renderer

    defaults.COMPILE_BACKEND = args.compile_backend
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.canvas.split("x"))
    dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    tile = run.tile(width * 3 // 5, width * 3 // 10)
    workload = run.Workload("levers", args.preset, width, height, (), (), tile=tile, dtype=dtype)
    renderer = Renderer(device=args.device, dtype=dtype)
    result = json.loads(args.out.read_text()) if args.out.exists() else {"workload": "levers", "rows": []}
    result["machine"] = run.machine(workload, renderer)
    methods = [run.Method(name, overrides) for name, overrides in GROUPS[args.group]]
    scenes = {m.name: run.build_scene(workload, m) for m in methods}
    warm, runs = {}, {m.name: [] for m in methods}
    for m in methods:
        start = time.perf_counter()
        warm[m.name] = run.measure(renderer, [scenes[m.name]], m)
        run.log(f"{m.name}: warm-up {time.perf_counter() - start:.1f} s (compile {warm[m.name]['compile']:.1f} s)")
    for _ in range(args.repeats):
        for m in methods:
            runs[m.name].append(run.measure(renderer, [scenes[m.name]], m))
            run.log(f"  {m.name}: {runs[m.name][-1]['total']:.3f} s")
        for m in methods:
            result["rows"] = [r for r in result["rows"] if r["row"] != m.name] + [
                row(result, m, scenes[m.name].sampler.images, args.group, warm[m.name], runs[m.name])]
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def row(result: dict, method, images: int, group: str, warm: dict, runs: list[dict]) -> dict:
    """A row's medians; the first row measured is the baseline, whose latent the others are compared with."""
    import torch

    out = {"row": method.name, "group": group, "overrides": list(method.overrides), "images": images,
           "warm_up_compile": warm["compile"], **run.median_run(runs)}
    latent = runs[-1]["latent"].flatten()[:4096].float()
    base = next((r for r in result["rows"] if r.get("baseline")), None)
    if base is None or base["row"] == method.name:  # kept as base64 float32: one line of the JSON
        out["baseline"], result["baseline_latent"] = True, base64.b64encode(latent.numpy().tobytes()).decode()
    elif images == 1 and "reference" not in method.name:  # the same picture as the baseline's?
        baseline = torch.frombuffer(bytearray(base64.b64decode(result["baseline_latent"])), dtype=torch.float32)
        out["max_abs_latent_diff_vs_default"] = float((latent - baseline).abs().max())
    return out


def table(result: dict) -> str:
    m = result["machine"]
    base = next(r for r in result["rows"] if r.get("baseline"))
    lines = [
        f"**levers** — {m['gpu'] or m['cpu']}, `{m['preset']}` {m['dtype']}, canvas {m['canvas'][0]}×{m['canvas'][1]}, "
        f"torch {m['torch']}, diffusers {m['diffusers']}, median of {len(base['total_all_repeats'])} after a warm-up",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    for r in result["rows"]:
        per_image = r["total"] / r["images"]
        cells = [r["row"], f"{r['max_batch']:.0f}", f"{run.network_calls(r):.0f}", f"{r['warm_up_compile']:.1f}",
                 f"{r['denoise']:.3f}", f"{r['decode']:.3f}", f"{r['total']:.3f}", f"{per_image:.3f}",
                 f"{1 / per_image:.2f}", f"{r['tflops_per_second']:.3g}", f"{r['peak_tflops_per_second']:.4g}",
                 f"{100 * r['fraction_of_peak']:.1f}",
                 f"{per_image / base['total']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    key = "max_abs_latent_diff_vs_default"
    diffs = {r["row"]: r[key] for r in result["rows"] if key in r}
    notes = (f"Peak: one square matrix product in {m['dtype']}, measured once per process (each group is one). "
             "compile s: the warm-up render's compiling. Max |latent − default's| (first 4096 values): "
             + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()))
    lines += ["", notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", choices=list(GROUPS), help="rows to measure (appended to --out)")
    parser.add_argument("--out", type=Path, help="JSON file the rows are written to")
    parser.add_argument("--table", type=Path, help="print the table of a JSON file and exit")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", help="default: float16 on CUDA, float32 elsewhere")
    parser.add_argument("--preset", default="full-random")
    parser.add_argument("--canvas", default="1280x768", help="WxH; the tile is 3/5 of the width, stride half that")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-backend", default="inductor", help="aot_eager: trace without building kernels")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    if not args.group or not args.out:
        parser.error("--group and --out are needed to measure")
    measure_rows(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
