"""Save-to-image latency of `semanticdraw watch` (architecture.md §7) against a cold `semanticdraw render`.

    python benchmarks/watch_latency.py                                   # tiny, CPU, Irworobongdo at 320×192
    python benchmarks/watch_latency.py --preset full-random --device cuda --dtype float16 --width 1280

The scene is Irworobongdo with every region's mask drawn into a PNG (the live-drawing workflow: masks
are files an editor saves), written to a temporary folder. One `WatchLoop` runs in a thread; after its
first render each repeat saves an edit the way editors do (a temporary file renamed over the original)
and waits for the loop's `rendered` event: a prompt edit (one region's text) and a mask edit (one
region's PNG shifted by a few pixels). Latency is from just before the rename to the event, i.e. the
watcher's debounce, the load, the recomputed stages, sampling, decoding and writing NAME-latest.png.
The cold render is `python -m semanticdraw_cli render` of the same scene in a fresh process (imports,
model load and all), timed from outside, after the session (so a preset the session built is built).
Writes benchmarks/results/watch-latency-<preset>-<machine>.json; `--table FILE` prints a result's table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from semanticdraw_cli.families import presets  # noqa: E402
from semanticdraw_cli.scene.rasterize import rasterize_mask  # noqa: E402
from semanticdraw_cli.render import Renderer  # noqa: E402
from semanticdraw_cli.report import cpu_name  # noqa: E402
from semanticdraw_cli.scene.types import Canvas  # noqa: E402
from semanticdraw_cli.scene.loader import load_scene, scene_to_dict  # noqa: E402
from semanticdraw_cli.watch import WatchLoop, WatchOptions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IRWOROBONGDO = ROOT / "scenes" / "irworobongdo.yaml"
RESULTS = ROOT / "benchmarks" / "results"
WAIT = 1800  # seconds: a bound on each wait for the loop
PROMPT_REGION, MASK_REGION = "lake", "sun"  # which region each edit touches


def write_scene(folder: Path, preset: str, width: int, tile: tuple[int, int] | None) -> Path:
    """Irworobongdo at `width` (aspect 5:3) with each region's mask as a PNG beside the YAML."""
    height = width * 3 // 5
    scene = load_scene(IRWOROBONGDO, [f"model.checkpoint={preset}"])
    scale = width / scene.canvas.width
    data = scene_to_dict(scene)
    data["canvas"] = {"width": width, "height": height}
    if tile is not None:
        data["sampler"]["tile"] = {"size": tile[0], "stride": tile[1]}
    for region, entry in zip(scene.regions, data["regions"]):  # Irworobongdo's masks are pixel-unit shapes
        shape = dataclasses.replace(region.mask, coords=tuple(c * scale for c in region.mask.coords))
        mask = rasterize_mask(shape, Canvas(width, height))  # (H, W) in [0, 1]
        Image.fromarray(np.round(mask * 255).astype(np.uint8)).save(folder / f"{region.name}.png")
        entry["mask"] = f"{region.name}.png"
    path = folder / "scene.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def save_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text)
    os.replace(temporary, path)


def save_png(path: Path, pixels: np.ndarray) -> None:
    temporary = path.with_name(f".{path.stem}.swp.png")
    Image.fromarray(pixels).save(temporary)
    os.replace(temporary, path)


def cold_render(scene: Path, out: Path, device: str, dtype: str) -> dict:
    """A fresh `semanticdraw render` process: wall seconds from outside, phases from its report."""
    command = [sys.executable, "-m", "semanticdraw_cli", "render", str(scene), "-o", str(out), "--overwrite", "-q",
               "--device", device, "--dtype", dtype]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the threads the session uses
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    wall = time.perf_counter() - start
    report = json.loads(next(out.glob("scene-*.json")).read_text())
    return {"wall": wall, "phases": {k: v for k, v in report["seconds"].items() if k != "steps"}}


def watch_session(scene: Path, out: Path, device: str, dtype: str, repeats: int) -> dict:
    events: queue.Queue = queue.Queue()
    loop = WatchLoop(WatchOptions(scene, out), Renderer(device=device, dtype=dtype), [events.put])
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run()
        except BaseException as error:
            failure.append(error)
            events.put(None)

    seen: set[str] = set()

    def rendered(kind: str = "rendered"):
        while True:
            event = events.get(timeout=WAIT)
            if event is None:
                raise RuntimeError(f"the watch loop failed: {failure[0]!r}")
            seen.add(event.kind)
            if event.kind == kind:
                return event

    start = time.perf_counter()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    first = rendered()
    first_seconds = time.perf_counter() - start
    if "watching" not in seen:  # saves count once the watcher is armed
        rendered("watching")
    source = scene.read_text()
    region = yaml.safe_load(source)["regions"]
    prompt = next(r["prompt"] for r in region if r["name"] == PROMPT_REGION)
    mask_path = scene.parent / f"{MASK_REGION}.png"
    mask = np.asarray(Image.open(mask_path))
    edits: dict[str, list[dict]] = {"prompt": [], "mask": []}
    for i in range(repeats):
        for kind in ("prompt", "mask"):
            start = time.perf_counter()
            if kind == "prompt":
                save_text(scene, source.replace(prompt, f"{prompt}, take {i + 1}"))
            else:
                save_png(mask_path, np.roll(mask, 2 * (i + 1), axis=1))
            event = rendered()
            edits[kind].append({"latency": time.perf_counter() - start, "recomputed": event.recomputed,
                                "phases": event.seconds})
    loop.stop()
    thread.join(timeout=WAIT)
    return {"first_render": first_seconds, "first_phases": first.seconds, "edits": edits}


def machine(device: str, dtype: str) -> dict:
    cpu = cpu_name()
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None
    label = gpu or f"{cpu}-{os.cpu_count()}c"
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "device": device, "dtype": dtype,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "load_average_start": os.getloadavg(),
            "slug": re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)|cpu|@.*", "", label.lower())).strip("-")}


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="tiny | small | full-random (default tiny)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--width", type=int, default=None, help="canvas width, height = 3/5 of it "
                                                                "(default 320 on CPU, 1280 on a GPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="JSON to write (default under benchmarks/results)")
    parser.add_argument("--table", type=Path, default=None, help="only print the table of a result JSON")
    args = parser.parse_args(argv)
    if args.table is not None:
        print(table(json.loads(args.table.read_text())))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    width = args.width or (1280 if args.device.startswith("cuda") else 320)
    tile = None if width >= 768 else (width * 3 // 5, width * 3 // 10)  # the default 768-px tile, else 2 windows
    info = machine(args.device, args.dtype)
    info["preset_built_before"] = presets.is_built("sd15", args.preset)  # else the first render builds it
    with tempfile.TemporaryDirectory() as folder:
        scene = write_scene(Path(folder), args.preset, width, tile)
        session = watch_session(scene, Path(folder) / "watch", args.device, args.dtype, args.repeats)
        cold = cold_render(scene, Path(folder) / "cold", args.device, args.dtype)  # the preset is built by now
    info["load_average_end"] = os.getloadavg()
    result = {"preset": args.preset, "canvas": [width, width * 3 // 5], "tile": tile, "machine": info,
              "cold_render": cold, "watch": session,
              "latency": {kind: summary([e["latency"] for e in edits]) for kind, edits in session["edits"].items()}}
    out = args.out or RESULTS / f"watch-latency-{args.preset}-{info['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return 0


def table(result: dict) -> str:
    """Markdown: the cold render, the session's first render, and per edit kind the save-to-image latency
    with what of it is sampling and decoding and what is the loop's own work (watcher, load, stages, writing)."""
    rows = ["| what | save to image, s (median; min–max) | of which denoise + decode | the rest | recomputed |",
            "|---|---|---|---|---|"]
    cold = result["cold_render"]
    phases = cold["phases"]
    rows.append(f"| cold `semanticdraw render` (new process, from outside) | {cold['wall']:.2f} | "
                f"{phases['denoise'] + phases['decode']:.2f} | {cold['wall'] - phases['denoise'] - phases['decode']:.2f} "
                f"| everything |")
    first = result["watch"]["first_phases"]
    rows.append(f"| watch: first render (model load included) | {result['watch']['first_render']:.2f} | "
                f"{first['denoise'] + first['decode']:.2f} | "
                f"{result['watch']['first_render'] - first['denoise'] - first['decode']:.2f} | everything |")
    for kind, edits in result["watch"]["edits"].items():
        latency = result["latency"][kind]
        sampling = statistics.median(e["phases"]["denoise"] + e["phases"]["decode"] for e in edits)
        rest = statistics.median(e["latency"] - e["phases"]["denoise"] - e["phases"]["decode"] for e in edits)
        recomputed = ", ".join(f"{k} {v}" for k, v in sorted(edits[0]["recomputed"].items())) or "nothing"
        rows.append(f"| watch: {kind} edit | {latency['median']:.2f} ({latency['min']:.2f}–{latency['max']:.2f}) | "
                    f"{sampling:.2f} | {rest:.2f} | {recomputed} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
