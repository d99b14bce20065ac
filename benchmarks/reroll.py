"""Issue 24's measurements: a re-roll of one region of Irworobongdo against the full render (seconds,
network calls, batch items), and the share of pixels outside a region that change when only its seed
changes (a full render, no --from).

    python benchmarks/reroll.py --preset small --width 640 --height 384 --out reroll.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from semanticdraw_cli.outputs import write_results  # noqa: E402
from semanticdraw_cli.render import Renderer, region_masks  # noqa: E402
from semanticdraw_cli.report import cpu_name  # noqa: E402
from semanticdraw_cli.scene.loader import load_scene  # noqa: E402
from semanticdraw_cli.scene.types import Reroll  # noqa: E402


def with_seed(scene, name: str, seed: int):
    regions = tuple(dataclasses.replace(r, seed=seed) if r.name == name else r for r in scene.regions)
    return dataclasses.replace(scene, regions=regions)


def timed(renderer: Renderer, scene) -> tuple[float, list]:
    start = time.perf_counter()
    results = renderer.render(scene)
    return time.perf_counter() - start, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--region", default="tree-left")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = [f"model.checkpoint={args.preset}", f"canvas.width={args.width}", f"canvas.height={args.height}",
                 "sampler.tile={size: 384, stride: 192}"]
    scene = load_scene(ROOT / "scenes" / "irworobongdo.yaml", overrides)
    scale = [args.width / 1280, args.height / 768]
    scene = dataclasses.replace(scene, regions=tuple(
        dataclasses.replace(r, mask=dataclasses.replace(r.mask, coords=tuple(v * scale[i % 2] for i, v in enumerate(r.mask.coords))))
        for r in scene.regions))
    renderer = Renderer(device=args.device)
    renderer.render(scene)  # warm-up: model load, encodings, plan
    full_seconds, (full,) = timed(renderer, scene)
    with tempfile.TemporaryDirectory() as folder:
        write_results([full], Path(folder))
        image = Path(folder) / f"{scene.name}-{full.seed}.png"
        rerolled_scene = dataclasses.replace(with_seed(scene, args.region, 1), reroll=Reroll(image, (args.region,)))
        renderer.render(rerolled_scene)  # warm-up of the picture's encoding
        reroll_seconds, (rerolled,) = timed(renderer, rerolled_scene)
    index = [r.name for r in scene.regions].index(args.region)
    inside = region_masks(scene)[index] > 0  # (H, W) the region's blurred mask
    kept = bool(np.array_equal(rerolled.image[~inside], full.image[~inside]))
    _, (seeded,) = timed(renderer, with_seed(scene, args.region, 1))
    changed = (seeded.image != full.image).any(axis=-1)  # (H, W)
    result = {
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, {args.device}",
        "preset": args.preset, "canvas": [args.width, args.height], "region": args.region,
        "region_share_of_canvas": float(inside.mean()),
        "full": {"seconds": full_seconds, "network_calls": full.report["network_calls"],
                 "batch_items": full.report["batch_items"]},
        "reroll": {"seconds": reroll_seconds, "network_calls": rerolled.report["network_calls"],
                   "batch_items": rerolled.report["batch_items"], "outside_bit_equal": kept},
        "seed_only": {"changed_outside": float(changed[~inside].mean()), "changed_inside": float(changed[inside].mean())},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
