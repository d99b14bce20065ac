"""Issue 15's speed levers, one row each on the same scene, model and seed: what `gpu_check.sh` runs.

    python benchmarks/levers.py --device cuda --preset full-random --group eager --out OUT.json
    python benchmarks/levers.py --device cuda --preset full-random --group compile --out OUT.json  # adds rows
    python benchmarks/levers.py --table OUT.json

Irworobongdo at 1280×768 (tile 768, stride 384). Each row: one warm-up render (it compiles, probes the
batch size, counts FLOPs), then `--repeats` timed renders and the median; rows run one after another, each
written to OUT.json as soon as it is measured, so a run cut short keeps what it measured. A group's rows run
in one process; `gpu_check.sh` gives each compiled group its own process.
"""

from __future__ import annotations

import argparse
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
           "TFLOP/s", "% peak", "× default")


def measure_rows(args: argparse.Namespace) -> None:
    import torch

    from semanticdraw_cli import defaults
    from semanticdraw_cli.render import Renderer

    defaults.COMPILE_BACKEND = args.compile_backend
    width, height = (int(v) for v in args.canvas.split("x"))
    dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    workload = run.Workload("levers", args.preset, width, height, (), (), tile=run.tile(width * 3 // 5, width * 3 // 10),
                            dtype=dtype)
    renderer = Renderer(device=args.device, dtype=dtype)
    result = json.loads(args.out.read_text()) if args.out.exists() else {"workload": "levers", "rows": []}
    result["machine"] = run.machine(workload, renderer)
    for name, overrides in GROUPS[args.group]:
        method = run.Method(name, overrides)
        scene = run.build_scene(workload, method)
        start = time.perf_counter()
        warm = run.measure(renderer, [scene], method)
        run.log(f"{name}: warm-up {time.perf_counter() - start:.1f} s (compile {warm['compile']:.1f} s)")
        runs = []
        for _ in range(args.repeats):
            runs.append(run.measure(renderer, [scene], method))
            run.log(f"  {name}: {runs[-1]['total']:.3f} s")
        row = {"row": name, "group": args.group, "overrides": list(overrides), "images": scene.sampler.images,
               "warm_up_compile": warm["compile"], **run.median_run(runs)}
        latent = runs[-1]["latent"]
        base = next((r for r in result["rows"] if r.get("baseline")), None)
        if base is None:
            row["baseline"], result["baseline_latent"] = True, latent.flatten()[:4096].tolist()
        elif row["images"] == 1 and "reference" not in name:  # the same picture as the baseline's?
            reference = torch.tensor(result["baseline_latent"])
            row["max_abs_latent_diff_vs_default"] = float((latent.flatten()[:4096] - reference).abs().max())
        result["rows"] = [r for r in result["rows"] if r["row"] != name] + [row]
        args.out.write_text(json.dumps(result, indent=2) + "\n")


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
        cells = [r["row"], f"{r['max_batch']:.0f}", f"{r['unet_calls']:.0f}", f"{r['warm_up_compile']:.1f}",
                 f"{r['denoise']:.3f}", f"{r['decode']:.3f}", f"{r['total']:.3f}", f"{per_image:.3f}",
                 f"{1 / per_image:.2f}", f"{r['tflops_per_second']:.3g}", f"{100 * r['fraction_of_peak']:.1f}",
                 f"{per_image / base['total']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    diffs = {r["row"]: r["max_abs_latent_diff_vs_default"] for r in result["rows"] if "max_abs_latent_diff_vs_default" in r}
    peak = base["peak_tflops_per_second"]
    lines += ["", f"Peak {peak:.4g} TFLOP/s: one square matrix product in {m['dtype']}, measured once per process. "
              "compile s: the warm-up render's compiling. Max |latent − default's| (first 4096 values): "
              + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items())]
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
