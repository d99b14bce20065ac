"""What a region's reference picture (IP-Adapter, issue 23) costs: one region's reference against none.

    python benchmarks/reference_picture.py --threads 1 --repeats 3     # `small` sd15 preset, CPU, ~5 min on 2 cores

One process, one model: a random IP-Adapter for the preset's UNet is built and saved once (as tests do), a
warm-up of each case, then `--repeats` interleaved rounds and the median. The scene is the Irworobongdo
layout (scenes/irworobongdo.yaml) at 640×384 with 384-px tiles; the second case gives its first region a
reference picture. Writes benchmarks/results/reference-picture-<machine>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from semanticdraw_cli.families import ip_adapter, presets  # noqa: E402
from semanticdraw_cli.render import Renderer  # noqa: E402
from semanticdraw_cli.report import network_calls  # noqa: E402
from semanticdraw_cli.scene.loader import load_scene  # noqa: E402
from semanticdraw_cli.scene.types import Reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ["model.checkpoint=small", "canvas.width=640", "canvas.height=384", "sampler.tile.size=384",
             "sampler.tile.stride=192"]


def cases(folder: Path) -> dict:
    """The scene without references, and with its first region's reference picture."""
    from diffusers import UNet2DConditionModel

    scene = load_scene(ROOT / "scenes" / "irworobongdo.yaml", OVERRIDES)
    unet = UNet2DConditionModel.from_pretrained(presets.ensure_preset("sd15", "small"), subfolder="unet")
    adapter = ip_adapter.build_random_adapter(unet, folder / "ip-adapter")
    picture = folder / "look.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(picture)
    first = dataclasses.replace(scene.regions[0], reference=Reference(picture, 0.6, str(adapter)))
    return {"none": scene, "one region's reference": dataclasses.replace(scene, regions=(first, *scene.regions[1:]))}


def measure(renderer: Renderer, scene) -> dict:
    start = time.perf_counter()
    report = renderer.render(scene)[0].report
    steps = report["steps"]
    first = scene.regions[0].name
    return {
        "seconds": time.perf_counter() - start,
        "denoise": report["seconds"]["denoise"],
        "encode": report["seconds"]["encode"],
        "network_calls": network_calls(report),
        "calls_per_step": [step["network_calls"] for step in steps],
        "batch_items": sum(step["batch_items"] for step in steps),
        "first_region": first,
    }


def region_share(renderer: Renderer, scene) -> float:
    """The first region's share of the (window, region) items over all steps (a background prompt is row 0)."""
    plan = renderer.prepare(scene).setup.plan
    first = 1 if scene.background.prompt is not None else 0
    pairs = [pair for step in plan for pair in step]
    return sum(pair.region == first for pair in pairs) / len(pairs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        scenes = cases(Path(folder))
        renderer = Renderer(device="cpu", dtype="float32")
        runs = {name: [] for name in scenes}
        for name, scene in scenes.items():  # warm-up: loads the model, attaches the adapter, encodes
            measure(renderer, scene)
        share = region_share(renderer, scenes["none"])
        for _ in range(args.repeats):
            for name, scene in scenes.items():
                runs[name].append(measure(renderer, scene))
    rows = {}
    for name, repeats in runs.items():
        rows[name] = {**repeats[0], "seconds": statistics.median(r["seconds"] for r in repeats),
                      "denoise": statistics.median(r["denoise"] for r in repeats),
                      "repeat_seconds": [r["seconds"] for r in repeats]}
    base = rows["none"]
    for row in rows.values():
        row["ratio_seconds"] = row["seconds"] / base["seconds"]
        row["ratio_denoise"] = row["denoise"] / base["denoise"]
    result = {
        "what": "irworobongdo 640x384, sd15 `small` preset, tile 384/192, float32; median of repeats, interleaved",
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "load_average_start": load_start, "load_average_end": os.getloadavg()},
        "repeats": args.repeats,
        "first_region_share_of_items": share,
        "rows": rows,
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"reference-picture-{_slug(_cpu())}-{os.cpu_count()}c.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, row in rows.items():
        print(f"{name:>24}: {row['seconds']:.2f} s (denoise {row['denoise']:.2f} s, x{row['ratio_denoise']:.3f}), "
              f"{row['network_calls']} calls, {row['batch_items']} items")
    print(out)
    return 0


def _slug(cpu: str) -> str:
    words = [w for w in cpu.lower().replace("(r)", "").replace("(tm)", "").split() if w.isalpha()][:3]
    return "-".join(words) or "machine"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
