"""Issue 23's ControlNet cost: one render without control, with one whole-canvas ControlNet, and with one region's.

    python benchmarks/control.py --out benchmarks/results/control-cpu-small-<cpu>.json            # CPU, `small`
    python benchmarks/control.py --device cuda --preset full-random --dtype float16 --out OUT.json  # a lent GPU
    python benchmarks/control.py --family sd3 --preset tiny --steps 1 --out OUT.json              # sd3's ControlNet

Irworobongdo at 640×384 (tile 384, stride 192), the `small` SD1.5 preset and its `small` ControlNet (or
`--family`'s preset and ControlNet of that name: sd3 and flux have `tiny`), a synthetic edge picture. One warm-up render per row, then `--repeats` rounds interleaved so that a busy
neighbour slows every row alike, and the median of the denoise phase. Targets: global ≤ 1.6× none; region
≤ 1 + 0.6 × that region's share of the items.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import numpy as np

import run  # benchmarks/run.py: scenes, measuring, machine facts

REGION = 1  # regions[1] of Irworobongdo holds the region's ControlNet
GLOBAL_TARGET, REGION_SLOPE = 1.6, 0.6


def edges(width: int, height: int) -> np.ndarray:
    """A line drawing: a grid of white lines on black, (H, W, 3) uint8."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[::16] = 255
    pixels[:, ::24] = 255
    return pixels


def rows(scene, preset: str) -> dict:
    from semanticdraw_cli.scene.types import Control

    entry = Control(preset, None, image_array=edges(scene.canvas.width, scene.canvas.height))
    regions = list(scene.regions)
    regions[REGION] = dataclasses.replace(regions[REGION], control=(entry,))
    return {"none": scene, "global": dataclasses.replace(scene, control=(entry,)),
            "region": dataclasses.replace(scene, regions=tuple(regions))}


def region_share(renderer, scene) -> float:
    """The share of all items (pairs × images, over the steps) that belong to the controlled region."""
    prepared = renderer.prepare(scene)
    row = REGION + (1 if scene.background.prompt is not None else 0)
    pairs = [pair for step in prepared.setup.plan for pair in step]
    return sum(pair.region == row for pair in pairs) / len(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--family", default="sd15", help="sd15, sdxl, sd3 or flux (with its own accelerator)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="only the first N of the scene's steps (all: none)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from semanticdraw_cli.render import Renderer

    family = () if args.family == "sd15" else (f"model.family={args.family}",)
    workload = run.Workload("control", args.preset, 640, 384, family, (), tile=run.tile(384, 192), dtype=args.dtype)
    renderer = Renderer(device=args.device, dtype=args.dtype)
    scene = run.build_scene(workload, run.Method("semanticdraw"))
    if args.steps:  # the cost ratios are per step; fewer steps make the run fit a busy machine
        scene = dataclasses.replace(scene, sampler=dataclasses.replace(scene.sampler, steps=scene.sampler.steps[:args.steps]))
    scenes = rows(scene, args.preset)
    method = run.Method("semanticdraw")
    for name, scene in scenes.items():
        run.measure(renderer, [scene], method)  # warm-up: loads the model and the ControlNet, builds presets
        run.log(f"{name}: warmed up")
    runs = {name: [] for name in scenes}
    for _ in range(args.repeats):
        for name, scene in scenes.items():
            runs[name].append(run.measure(renderer, [scene], method))
            run.log(f"  {name}: denoise {runs[name][-1]['denoise']:.3f} s")
    share = region_share(renderer, scenes["region"])
    base = statistics.median(r["denoise"] for r in runs["none"])
    result = {"workload": "control", "family": args.family, "machine": run.machine(workload, renderer),
              "steps": list(scene.sampler.steps),
              "region_share_of_items": share,
              "targets": {"global": GLOBAL_TARGET, "region": 1 + REGION_SLOPE * share}, "rows": []}
    for name, measured in runs.items():
        denoise = statistics.median(r["denoise"] for r in measured)
        result["rows"].append({
            "row": name, "denoise_all_repeats": [r["denoise"] for r in measured], "denoise": denoise,
            "total": statistics.median(r["total"] for r in measured), "ratio_vs_none": denoise / base,
            "network_calls_per_step": measured[0]["network_calls"] / measured[0]["steps"],
            "batch_items_per_step": measured[0]["batch_items"] / measured[0]["steps"],
        })
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


def table(result: dict) -> str:
    m = result["machine"]
    lines = [f"**control** — {m['gpu'] or m['cpu']}, {result.get('family', 'sd15')} `{m['preset']}` {m['dtype']}, "
             f"canvas {m['canvas'][0]}×"
             f"{m['canvas'][1]}, median of {len(result['rows'][0]['denoise_all_repeats'])} after a warm-up", "",
             "| row | denoise s | × none | target | calls/step | items/step |", "|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        target = result["targets"].get(r["row"])
        lines.append(f"| {r['row']} | {r['denoise']:.3f} | {r['ratio_vs_none']:.2f} | "
                     f"{'≤ %.2f' % target if target else ''} | {r['network_calls_per_step']:.1f} | "
                     f"{r['batch_items_per_step']:.1f} |")
    lines += ["", f"The region's share of the items: {result['region_share_of_items']:.2f}."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
