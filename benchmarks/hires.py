"""Hires 2× against one full-size pass: Irworobongdo at 2560×1536, seconds and network calls of each.

    python benchmarks/hires.py                                   # CPU, the `small` preset, 2560×1536
    python benchmarks/hires.py --preset full-random --device cuda --dtype float16
    python benchmarks/hires.py --clip                            # also CLIP per region (real weights only)
    python benchmarks/hires.py --preset tiny --width 640 --height 384 --out /tmp/h.json   # mechanics only

Both renders use the same seed and the scene's own sampler. The full-size pass renders the canvas at
once; hires renders it at canvas/scale, upscales and paints over it at full size (docs/scene-format.md,
`hires`). Each is run once after a warm-up of the model (load and the preset build excluded). With
`--clip` each image is scored per region as `semanticdraw score` does, with real SD1.5 + LCM weights
and CLIP from the hub cache: without them it says which are missing, renders nothing and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from run import IRWOROBONGDO, RESULTS, log, scaled_shapes  # noqa: E402

from semanticdraw_cli import defaults  # noqa: E402
from semanticdraw_cli.errors import RenderError  # noqa: E402
from semanticdraw_cli.render import Renderer  # noqa: E402
from semanticdraw_cli.report import network_calls  # noqa: E402
from semanticdraw_cli.scene.loader import load_scene  # noqa: E402
from semanticdraw_cli.scene.types import Hires, Scene  # noqa: E402


def build_scenes(args) -> dict[str, Scene]:
    """The full-size scene and its hires twin (same seed, sampler and regions)."""
    sets = [f"model.checkpoint={args.preset}", f"canvas.width={args.width}", f"canvas.height={args.height}"]
    full = scaled_shapes(load_scene(IRWOROBONGDO, sets), args.width / 1280, args.height / 768)
    hires = Hires(args.scale, args.strength, full.sampler.steps, full.sampler.grid, defaults.HIRES_UPSCALER)
    return {"full size": full, f"hires {args.scale:g}x": dataclasses.replace(full, hires=hires)}


def measure(renderer: Renderer, scene: Scene, clip) -> dict:
    start = time.perf_counter()
    (result,) = renderer.render(scene)
    seconds = time.perf_counter() - start
    report = result.report
    row = {"seconds": seconds, "denoise": report["seconds"]["denoise"], "network_calls": network_calls(report),
           "batch_items": report["batch_items"], "latent_pixels": report["latent_pixels"]}
    if "hires" in report:
        row["passes"] = [{key: p[key] for key in ("canvas", "steps", "network_calls", "batch_items")}
                         | {"denoise": p["seconds"]["denoise"]} for p in report["hires"]["passes"]]
    if clip is not None:
        from semanticdraw_cli.score import score_with

        scores = score_with(clip, result.image, scene).to_dict()
        row["clip"] = {"clip_fg": scores["clip_fg"], "clip_bg": scores["clip_bg"],
                       "regions": {a["name"]: a["score"] for a in scores["regions"]}}
    log(f"{scene.canvas.width}x{scene.canvas.height} {'hires' if scene.hires else 'full'}: {seconds:.1f} s, "
        f"{row['network_calls']} calls")
    return row


def machine(args) -> dict:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    label = gpu or f"{cpu}-{os.cpu_count()}c"
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "device": args.device, "dtype": args.dtype or "auto",
            "torch": torch.__version__, "preset": args.preset, "load_average_start": os.getloadavg(),
            "slug": re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)|cpu|@.*", "", label.lower())).strip("-")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="checkpoint: a preset or real SD1.5 weights")
    parser.add_argument("--width", type=int, default=2560)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--scale", type=float, default=defaults.HIRES_SCALE)
    parser.add_argument("--strength", type=float, default=defaults.HIRES_STRENGTH)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--clip", action="store_true", help="score each region with CLIP (needs real weights)")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/hires-<preset>-<machine>.json)")
    args = parser.parse_args(argv)
    renderer, scenes = Renderer(device=args.device, dtype=args.dtype), build_scenes(args)
    clip = None
    try:
        if args.clip:
            from semanticdraw_cli.score import load_clip

            clip = load_clip(None, args.device)
        renderer.adapter(next(iter(scenes.values())))
    except RenderError as error:
        log(f"hires: skipped, weights missing here.\n{error}")
        return 0
    info = machine(args)
    rows = {name: measure(renderer, scene, clip) for name, scene in scenes.items()}
    full, hires = rows.values()
    result = {"canvas": [args.width, args.height], "scale": args.scale, "strength": args.strength,
              "machine": info | {"load_average_end": os.getloadavg()}, "rows": rows,
              "hires_over_full": {"seconds": hires["seconds"] / full["seconds"],
                                  "network_calls": hires["network_calls"] / full["network_calls"]}}
    out = args.out or RESULTS / f"hires-{args.preset}-{info['slug']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
