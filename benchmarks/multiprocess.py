"""Throughput of `render` under a launcher (docs/architecture.md §7): whole commands, timed from outside.

    python benchmarks/multiprocess.py                     # CPU: 2 processes x 1 thread vs 1 process x 2 threads
    python benchmarks/multiprocess.py --workload gpu-one  # one GPU: torchrun / accelerate launch with 1 process vs plain

Each configuration runs the same `semanticdraw render` (tiny preset, two-subjects at 1024x1024, 8
images in batches of 4, so two processes get one batch each) as a fresh command: process start, imports and
model load included, as a CI job sees it. Configurations are interleaved per repeat, so a busy neighbour
slows each alike; the table shows the median. Per run it also records the render seconds without the
model load (from the images' reports: each process's batches, the slowest process) and the load average
(the machine may be shared). Writes benchmarks/results/multiprocess-<workload>-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
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
IMAGES = 8
CANVAS = ["--set", "canvas.width=1024", "--set", "canvas.height=1024"]  # 4 windows: the render outweighs the start
RENDER = ["render", str(ROOT / "scenes" / "two-subjects.yaml"), "--model", "tiny", "--images", str(IMAGES), *CANVAS,
          "--set", "sampler.max_batch=4", "--quiet", "--json"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no"]


def workloads() -> dict[str, list[dict]]:
    """Configuration name -> command prefix, torch threads per process, device."""
    plain = [sys.executable, "-m", "semanticdraw_cli"]
    return {
        "cpu": [
            {"name": "1 process x 2 threads", "command": plain, "threads": 2, "device": "cpu"},
            {"name": "2 processes x 1 thread (torchrun)", "command": [*TORCHRUN, "--nproc_per_node", "2", "-m",
                                                                      "semanticdraw_cli"], "threads": 1, "device": "cpu"},
            {"name": "1 process x 1 thread", "command": plain, "threads": 1, "device": "cpu"},
            # OpenMP workers sleep instead of spinning while they wait: fairer to threads on a shared machine
            {"name": "1 process x 2 threads, OMP_WAIT_POLICY=PASSIVE", "command": plain, "threads": 2, "device": "cpu",
             "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
        ],
        "gpu-one": [
            {"name": "plain", "command": plain, "threads": None, "device": "cuda"},
            {"name": "torchrun, 1 process", "command": [*TORCHRUN, "--nproc_per_node", "1", "-m", "semanticdraw_cli"],
             "threads": None, "device": "cuda"},
            {"name": "accelerate launch, 1 process", "command": [*ACCELERATE, "--num_processes", "1", "-m",
                                                                 "semanticdraw_cli"], "threads": None, "device": "cuda"},
            # one process is a plain run (no process group): two on the one GPU measure the launch itself
            {"name": "torchrun, 2 processes on the GPU", "command": [*TORCHRUN, "--nproc_per_node", "2", "-m",
                                                                     "semanticdraw_cli"], "threads": None, "device": None},
        ],
    }


def run_once(config: dict, folder: Path) -> dict:
    """One whole command: wall seconds, images/s, and the slowest process's render seconds without the load."""
    shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": "1"}
    if config["threads"]:
        env["OMP_NUM_THREADS"] = str(config["threads"])
    env.update(config.get("env", {}))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    device = ["--device", config["device"]] if config["device"] else []  # None: each process its local GPU
    done = subprocess.run([*config["command"], *RENDER, *device, "-o", str(folder)], env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{config['name']} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    images = json.loads(done.stdout)
    render: dict[int, float] = {}
    load: dict[int, float] = {}
    for entry in images:  # one report per image, holding its batch's phase seconds: a share of each batch
        report = json.loads(Path(entry["report"]).read_text())
        process, seconds = entry.get("process", 0), report["seconds"]
        render[process] = render.get(process, 0.0) + (seconds["total"] - seconds["load"]) / report["images_in_batch"]
        load[process] = max(load.get(process, 0.0), seconds["load"])
    slowest = max(render.values())
    return {"wall": wall, "images_per_s": len(images) / wall, "render_s": slowest,
            "render_images_per_s": len(images) / slowest, "load_s": max(load.values()), "processes": len(render),
            "load_average_1min": [load_before, os.getloadavg()[0]]}


def machine() -> dict:
    import torch

    cpu = cpu_name()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    label = gpu or f"{cpu}-{os.cpu_count()}c"
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "load_average_start": os.getloadavg(),
            "slug": re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)|cpu|@.*", "", label.lower())).strip("-")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(workloads()), default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    configs = workloads()[args.workload]
    info = machine()
    runs: dict[str, list[dict]] = {c["name"]: [] for c in configs}
    with tempfile.TemporaryDirectory() as scratch:
        run_once(configs[-1], Path(scratch) / "warm-up")  # builds the preset into the cache once
        for repeat in range(args.repeats):
            for config in configs:
                runs[config["name"]].append(run_once(config, Path(scratch) / "out"))
                last = runs[config["name"]][-1]
                print(f"repeat {repeat + 1} {config['name']}: {last['wall']:.1f} s, {last['images_per_s']:.3f} images/s "
                      f"(render {last['render_images_per_s']:.3f}), load {last['load_average_1min']}", file=sys.stderr)
    rows = []
    for config in configs:
        measured = runs[config["name"]]
        row = {"configuration": config["name"], "threads_per_process": config["threads"], "device": config["device"],
               "environment": config.get("env", {}),
               **{key: statistics.median(run[key] for run in measured)
                  for key in ("wall", "images_per_s", "render_s", "render_images_per_s", "load_s")},
               "runs": measured}
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["throughput_vs_first"] = round(row["images_per_s"] / base["images_per_s"], 3)
        row["render_throughput_vs_first"] = round(row["render_images_per_s"] / base["render_images_per_s"], 3)
    info["load_average_end"] = os.getloadavg()
    result = {"workload": f"multiprocess-{args.workload}", "images": IMAGES, "command": RENDER, "machine": info,
              "repeats": args.repeats, "rows": rows}
    out = args.out or RESULTS / f"multiprocess-{args.workload}-{info['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def table(result: dict) -> str:
    lines = ["| configuration | wall s | images/s | × first | render s (no load) | render images/s | × first | load s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in result["rows"]:
        lines.append(f"| {row['configuration']} | {row['wall']:.1f} | {row['images_per_s']:.3f} | "
                     f"{row['throughput_vs_first']:.2f} | {row['render_s']:.1f} | {row['render_images_per_s']:.3f} | "
                     f"{row['render_throughput_vs_first']:.2f} | {row['load_s']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
