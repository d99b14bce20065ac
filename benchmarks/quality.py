"""The paper's quality table: mean CLIP_fg and CLIP_bg of Irworobongdo per method (SemanticDraw, MD + LCM, MD).

    python benchmarks/quality.py                         # SD1.5 + LCM-LoRA, openai/clip-vit-large-patch14, 4 seeds
    python benchmarks/quality.py --seeds 16 --readme     # more images; paste the table into benchmarks/README.md
    python benchmarks/quality.py --model tiny --model-clip tiny --scale 0.25 --methods semanticdraw   # mechanics only

Every method renders the same seeds of scenes/irworobongdo.yaml on the same checkpoint; each image is
scored like `semanticdraw score` does (CLIP_fg: mean over the eight regions' masked crops, CLIP_bg: the
uncovered area against the background prompt) and the table shows the means over the images.

Needs real weights, from the hub cache or local folders: when the checkpoint, the LCM LoRA or CLIP is
missing it says which and what to do, renders nothing and exits 0 ("skipped"). Built-in presets run
the mechanics; their numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from run import IRWOROBONGDO, RESULTS, log, paste_into_readme, scaled_shapes  # noqa: E402

from semanticdraw_cli import defaults  # noqa: E402
from semanticdraw_cli.errors import RenderError  # noqa: E402
from semanticdraw_cli.families import registry  # noqa: E402
from semanticdraw_cli.render import Renderer  # noqa: E402
from semanticdraw_cli.scene.types import Scene  # noqa: E402
from semanticdraw_cli.scene.loader import load_scene  # noqa: E402
from semanticdraw_cli.score import load_clip, score_with  # noqa: E402

# The paper's three rows; the loader's defaults give each method its published settings:
# SemanticDraw with LCM (5 steps), MultiDiffusion with LCM (same steps, 512 px windows, stride 64),
# and MultiDiffusion as published (no LoRA, DDIM 50 steps, guidance 7.5).
METHODS: dict[str, tuple[str, ...]] = {
    "semanticdraw": (),
    "MD + LCM": ("sampler.method=multidiffusion", "model.accelerator=lcm"),
    "MD": ("sampler.method=multidiffusion",),
}


def build_scene(checkpoint: str, overrides: tuple[str, ...], seed: int, images: int, scale: float) -> Scene:
    """Irworobongdo with the method's overrides, `images` seeds from `seed`, canvas scaled by `scale`."""
    width, height = (int(round(side * scale / 8)) * 8 for side in (1280, 768))
    sets = [f"model.checkpoint={checkpoint}", f"sampler.seed={seed}", f"sampler.images={images}",
            f"canvas.width={width}", f"canvas.height={height}", *overrides]
    return scaled_shapes(load_scene(IRWOROBONGDO, sets), width / 1280, height / 768)


def load_models(args, scenes: dict[str, Scene], renderer: Renderer):
    """CLIP and every method's model, before any render; None (and the reason logged) when one is missing."""
    try:
        clip = load_clip(args.model_clip, args.device)
        for scene in scenes.values():
            renderer.adapter(scene)
    except RenderError as error:
        log(f"quality: skipped, weights missing here.\n{error}")
        return None
    return clip


def run_method(renderer: Renderer, clip, scene: Scene, save: Path | None) -> dict:
    """Render the scene's images, score each: per image CLIP_fg, CLIP_bg and every region's score."""
    start = time.perf_counter()
    results = renderer.render(scene, save)
    seconds = time.perf_counter() - start
    images = []
    for result in results:
        scores = score_with(clip, result.image, scene).to_dict()
        images.append({"seed": result.seed, "clip_fg": scores["clip_fg"], "clip_bg": scores["clip_bg"],
                       "regions": {a["name"]: a["score"] for a in scores["regions"]}})
    names = list(images[0]["regions"])
    return {
        "images": len(images),
        "clip_fg": _mean(i["clip_fg"] for i in images),
        "clip_bg": _mean(i["clip_bg"] for i in images),
        "regions": {name: _mean(i["regions"][name] for i in images) for name in names},
        "seconds_per_image": seconds / len(images),
        "sampler": {"method": scene.sampler.method, "steps": list(scene.sampler.steps), "grid": scene.sampler.grid,
                    "guidance": scene.sampler.guidance, "accelerator": scene.model.accelerator.name,
                    "tile": [scene.sampler.tile.size, scene.sampler.tile.stride]},
        "per_image": images,
    }


def machine(args) -> dict:
    import diffusers
    import transformers

    from semanticdraw_cli.devices import pick_device

    device = pick_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    label = gpu or platform.processor() or platform.machine()
    return {
        "gpu": gpu, "device": str(device), "dtype": args.dtype or "auto", "torch": torch.__version__,
        "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "python": platform.python_version(), "checkpoint": args.model, "clip": args.model_clip,
        "slug": re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "machine",
    }


def table(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"**quality** — Irworobongdo {result['canvas'][0]}×{result['canvas'][1]}, `{m['checkpoint']}`, CLIP "
        f"`{m['clip']}`, {result['seeds'][0]}..{result['seeds'][-1]} ({len(result['seeds'])} seeds), "
        f"{m['gpu'] or m['device']}, {m['dtype']}",
        "",
        "| method | images | CLIP_fg | CLIP_bg | s / image |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in result["methods"].items():
        lines.append(f"| {name} | {row['images']} | {_cell(row['clip_fg'])} | {_cell(row['clip_bg'])} "
                     f"| {row['seconds_per_image']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=registry.family("sd15").checkpoint, help="SD1.5 checkpoint")
    parser.add_argument("--model-clip", default=defaults.CLIP_CHECKPOINT, help="CLIP checkpoint")
    parser.add_argument("--seeds", type=int, default=4, help="images per method, seeds SEED..SEED+N-1")
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    parser.add_argument("--methods", nargs="*", choices=list(METHODS), help="only these methods")
    parser.add_argument("--scale", type=float, default=1.0, help="canvas scale (1: the paper's 1280×768)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--save", type=Path, help="also write every image and report to this folder")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/quality-<machine>.json)")
    parser.add_argument("--readme", action="store_true", help="paste the table into benchmarks/README.md")
    args = parser.parse_args(argv)
    methods = {name: METHODS[name] for name in (args.methods or METHODS)}
    scenes = {name: build_scene(args.model, sets, args.seed, args.seeds, args.scale) for name, sets in methods.items()}
    renderer = Renderer(device=args.device, dtype=args.dtype)
    clip = load_models(args, scenes, renderer)
    if clip is None:
        return 0
    rows = {}
    for name, scene in scenes.items():
        log(f"quality: {name}, {args.seeds} images")
        rows[name] = run_method(renderer, clip, scene, args.save)
    canvas = next(iter(scenes.values())).canvas
    result = {"workload": "quality", "machine": machine(args), "canvas": [canvas.width, canvas.height],
              "seeds": list(range(args.seed, args.seed + args.seeds)), "methods": rows}
    out = args.out or RESULTS / f"quality-{result['machine']['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    markdown = table(result)
    print(markdown)
    log(f"wrote {out}")
    if args.readme:
        paste_into_readme("quality", markdown)
    return 0


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
