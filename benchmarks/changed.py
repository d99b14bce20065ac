"""What `render --changed` costs when nothing changed, and what content keys cost for a big local checkpoint.

    python benchmarks/changed.py                    # 100 scenes, 5 repeats, a 2 GiB checkpoint (~2 min here)

1. 100 small scenes (64×64, tiny preset, each reading its own mask PNG) are rendered once into a temporary
   folder; then `python -m semanticdraw_cli render scenes/*.yaml -o out --changed --quiet --json` runs again
   in fresh processes, timed from outside (Python start, imports, loading the 100 scenes, hashing their
   masks, reading 100 reports and PNG headers): with `--device cpu`, and with the device left to choose
   (which imports torch to ask for CUDA). One more run of each records which heavy modules the process
   imported (torch, diffusers, transformers): none with `--device cpu`, and no model loads in either (the
   `--json` lists every image as skipped).
2. A scene whose `model.checkpoint` is a 2 GiB local `.safetensors` file (sparse: its bytes read as zeros,
   so the first hash measures hashing, not the disk): the seconds of `content_key.scene_inputs` with an
   empty hash cache, then again with the cache the first call wrote.

Writes benchmarks/results/changed-<machine>.json; `--table FILE` prints a result's table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from semanticdraw_cli.report import cpu_name  # noqa: E402
HEAVY = ("torch", "diffusers", "transformers")
PROBE = (  # runs the CLI, then says which heavy modules the process imported
    "import json, runpy, sys\n"
    "sys.argv = ['semanticdraw'] + sys.argv[1:]\n"
    "try:\n    runpy.run_module('semanticdraw_cli', run_name='__main__')\n"
    "except SystemExit as done:\n    code = done.code\n"
    f"print(json.dumps({{'exit': code, 'imported': [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)\n"
)
SCENE = """version: 1
canvas: {{width: 64, height: 64}}
model: {{checkpoint: tiny}}
regions:
  - name: r{n}
    prompt: object number {n}
    mask: {{image: m{n}.png}}
"""


def environment() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def write_scenes(folder: Path, count: int) -> list[str]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    for n in range(count):
        pixels = np.zeros((64, 64), np.uint8)
        pixels[n % 32 : n % 32 + 24, 8:40] = 255
        Image.fromarray(pixels).save(folder / f"m{n}.png")
        (folder / f"s{n:03d}.yaml").write_text(SCENE.format(n=n))
    return sorted(str(path) for path in folder.glob("*.yaml"))


def cli(args: list[str], cwd: Path, probe: bool = False) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the process, the process) of one CLI call in a fresh process. The CPU
    seconds are what the wall time would be on an idle machine (the call runs on one thread)."""
    command = [sys.executable, "-c", PROBE, *args] if probe else [sys.executable, "-m", "semanticdraw_cli", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done


def unchanged_scenes(count: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        scenes = write_scenes(work / "scenes", count)
        seconds, _, first = cli(["render", *scenes, "-o", "out", "--device", "cpu", "--quiet"], work)
        assert first.returncode == 0, first.stderr
        found = {"scenes": count, "first_render_seconds": seconds}
        for label, device in (("device_cpu", ["--device", "cpu"]), ("device_auto", [])):
            args = ["render", *scenes, "-o", "out", "--changed", "--quiet", "--json", *device]
            times, cpu = [], []
            for _ in range(repeats):
                seconds, cpu_seconds, done = cli(args, work)
                assert done.returncode == 0, done.stderr
                entries = json.loads(done.stdout)
                assert len(entries) == count and all(entry.get("skipped") == "unchanged" for entry in entries)
                times.append(seconds)
                cpu.append(cpu_seconds)
            _, _, probed = cli(args, work, probe=True)
            report = json.loads(probed.stderr.strip().splitlines()[-1])
            found[label] = {"seconds": summary(times), "cpu_seconds": summary(cpu), "skipped": count, "rendered": 0,
                            "heavy_modules_imported": report["imported"], "exit_code": report["exit"]}
        return found


def checkpoint_keys(size: int) -> dict:
    from semanticdraw_cli import content_key
    from semanticdraw_cli.file_hashes import HashCache
    from semanticdraw_cli.scene.loader import load_scene

    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        weights = work / "model.safetensors"
        with open(weights, "wb") as handle:
            handle.truncate(size)  # sparse
        write_scenes(work / "scenes", 1)
        scene = load_scene(work / "scenes" / "s000.yaml", [f"model.checkpoint={weights}"], allow_outside=True)
        cache = work / "file-hashes.json"
        rows = {}
        for label in ("first", "second"):
            hashes = HashCache(cache)
            start, cpu = time.perf_counter(), time.process_time()
            content_key.scene_inputs(scene, hashes)
            hashes.save()
            rows[label] = {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                           "files_hashed": hashes.hashed}
        return {"checkpoint_bytes": size, "sparse": True, **rows}


def machine() -> dict:
    cpu = cpu_name()
    label = f"{cpu}-{os.cpu_count()}c"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average_start": os.getloadavg(),
            "slug": re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)|cpu|@.*", "", label.lower())).strip("-")}


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def table(result: dict) -> str:
    scenes = result["unchanged"]
    lines = ["| measure | CPU seconds | wall seconds |", "|---|---|---|"]
    for label, what in (("device_cpu", "--device cpu"), ("device_auto", "device left to choose")):
        row = scenes[label]
        imported = ", ".join(row["heavy_modules_imported"]) or "none"
        wall, cpu = row["seconds"], row["cpu_seconds"]
        lines.append(f"| `render --changed`, {scenes['scenes']} unchanged scenes, {what} (imports: {imported}) | "
                     f"{cpu['median']:.2f} ({cpu['min']:.2f}–{cpu['max']:.2f}) | {wall['median']:.2f} "
                     f"({wall['min']:.2f}–{wall['max']:.2f}), median of {len(wall['all'])} |")
    keys = result["checkpoint"]
    gib = keys["checkpoint_bytes"] / 1024**3
    for label, what in (("first", "first time"), ("second", "second time (hash cache)")):
        lines.append(f"| content key, scene with a {gib:g} GiB local checkpoint, {what} | "
                     f"{keys[label]['cpu_seconds']:.4f} | {keys[label]['seconds']:.4f} |")
    load = result["machine"]
    lines.append(f"\nLoad average {load['load_average_start'][0]:.1f} at the start, "
                 f"{load['load_average_end'][0]:.1f} at the end, on {load['cores']} cores.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--checkpoint-gib", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=None, help="JSON to write (default under benchmarks/results)")
    parser.add_argument("--table", type=Path, default=None, help="print the table of a result file and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    info = machine()
    result = {"machine": info, "unchanged": unchanged_scenes(args.scenes, args.repeats),
              "checkpoint": checkpoint_keys(int(args.checkpoint_gib * 1024**3))}
    info["load_average_end"] = os.getloadavg()
    out = args.out or RESULTS / f"changed-{info['slug']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
