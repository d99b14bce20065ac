"""Host work of the step loop: aten operations and host seconds per step with a free denoiser.

    python benchmarks/host_ops.py                        # this checkout: Irworobongdo 1280×768 and a 4096² scene
    python benchmarks/host_ops.py --baseline 4bed6a2     # the same on an earlier commit, side by side, one run
    python benchmarks/host_ops.py --baseline 4bed6a2 --rounds 3 --repeats 7   # trees take turns 3 times (as committed)
    python benchmarks/host_ops.py --canvas 640x384       # other canvases (Irworobongdo's shapes stretched)
    python benchmarks/host_ops.py --canvas 1280x768 --control   # with a whole-canvas ControlNet (its crops)

The denoiser returns its input (no network work), so what is left is the sampler's own gathering,
masking, rolling, leak weighting and scattering: on a GPU each operation is a dispatch and a kernel
launch, paid on the host whatever the GPU's speed (issue 27: at most 150 per step whatever the pair
count). Both scenes use the `tiny` preset on the CPU, one thread; the 4096² scene is Irworobongdo's
shapes stretched over 4096×4096 (hundreds of pairs per step).

Counted with `torch.profiler`: `dispatched` is the aten operations called from Python (each a
dispatch), `all` also counts the ones those call inside. Batch sizes: `max_batch` 8 (the CPU's auto)
and "all" (every item of a shape in one call, as auto does on a GPU with room). Seconds per step twice:
on the CPU (`host_seconds`: the arithmetic included, which on a CPU is the host's too), and on the
meta device (`meta_seconds`: the same operations dispatched with shapes only, nothing computed, as a
GPU's host issues them without waiting; no bootstrap step there, since centring reads masks on the host).
On the meta device the step gathers and scatters each group whole, as prepared for CUDA (`meta_ops`); on
the CPU it does so call by call, as prepared for a CPU (`FusionSetup.whole_groups`). Seconds are the
process's CPU seconds (`time.process_time`, one thread), so another process on the machine inflates them
less than wall time. `floor_seconds` bounds any step loop on this CPU from below: the noise the step draws
and one contiguous copy of its items' windows in and out, with no indexing or arithmetic at all.
`--control` adds a whole-canvas `tiny` ControlNet on a line drawing: the free denoiser ignores it, but
each call's conditioning, its crops included, is made in the step and counted (written to
host-ops-control-cpu-tiny-<cpu>-2c.json). A baseline commit is checked out with `git worktree` into a
temporary folder and measured by this script in a process whose code comes from that tree.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CANVASES = ("1280x768", "4096x4096")
TARGET_OPS = 150


class FreeDenoiser:
    """x0 = x: the sampler's host work alone."""

    def predict_x0(self, x, table, step, items):
        return x


def scene_of(width: int, height: int, control: bool = False):
    from semanticdraw_cli.scene.loader import load_scene
    from semanticdraw_cli.scene.types import Control

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from control import edges
    from run import IRWOROBONGDO, scaled_shapes

    scene = load_scene(IRWOROBONGDO, ["model.checkpoint=tiny", f"canvas.width={width}", f"canvas.height={height}"])
    scene = scaled_shapes(scene, width / 1280, height / 768)
    if control:
        scene = dataclasses.replace(scene, control=(Control("tiny", None, image_array=edges(width, height)),))
    return scene


def count_ops(events) -> tuple[int, int]:
    """(dispatched, all) aten operations among the profiler's events."""
    aten = [e for e in events if e.name.startswith("aten::")]
    nested = {id(child) for e in aten for child in e.cpu_children if child.name.startswith("aten::")}
    return sum(1 for e in aten if id(e) not in nested), len(aten)


def on_meta(setup):
    """The setup with its tensors on the meta device and no bootstrap step (its centring reads masks on the host):
    every operation is dispatched with its shapes, none computed, as the host of a GPU issues them."""
    import torch

    def meta(value):
        return value.to("meta") if isinstance(value, torch.Tensor) else value

    changes = dict(
        masks=meta(setup.masks), weights=tuple(tuple(meta(w) for w in step) for step in setup.weights),
        cond={k: meta(v) for k, v in setup.cond.items()}, guidance=meta(setup.guidance), fill=meta(setup.fill),
        white=meta(setup.white), base=meta(setup.base), bootstrap_steps=0,
        uncond=None if setup.uncond is None else {k: meta(v) for k, v in setup.uncond.items()},
        pull_to_fill=None if setup.pull_to_fill is None else tuple(meta(p) for p in setup.pull_to_fill),
    )
    if getattr(setup, "controls", None) is not None:  # its index tensors made again on the meta device
        pictures = setup.controls.pictures
        pictures = tuple(map(meta, pictures)) if isinstance(pictures, tuple) else meta(pictures)
        weights = meta(setup.controls.weights)
        changes["controls"] = dataclasses.replace(setup.controls, pictures=pictures, weights=weights)
    if "index" in {f.name for f in dataclasses.fields(setup)}:
        changes["index"] = None  # built again from the meta tensors, inside the first step (not counted)
        changes["whole_groups"] = True  # as prepared for CUDA
    return dataclasses.replace(setup, **changes)


def dispatch_seconds(prepared, setup, repeats: int) -> tuple[float, list[int]]:
    """Host seconds per step on the meta device (the first step, which builds the index there, left out), and
    the operations dispatched per step there (profiled once)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from semanticdraw_cli.fusion import sample

    setup, runs, ops = on_meta(setup), [], []

    def steps():
        generators = [torch.Generator("cpu").set_state(state) for state in prepared.generator_states]
        return sample(FreeDenoiser(), setup, prepared.x.to("meta"), generators)

    profiled = steps()
    next(profiled)
    while True:
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            stats = next(profiled, None)
        if stats is None:
            break
        ops.append(count_ops(profiler.events())[0])
    for _ in range(repeats):
        last, per_step = time.process_time(), []
        for _state in steps():
            now = time.process_time()
            per_step.append(now - last)
            last = now
        runs.append(statistics.mean(per_step[1:]))
    return statistics.median(runs), ops


def floor_seconds(prepared, setup, repeats: int) -> float:
    """A lower bound on the CPU seconds of a step, per step on average: the canvas noise the step must draw (the
    re-noise, and the bootstrap's), one copy of its items' windows into the network's input and one read of its
    output, each done as a single contiguous pass (no indexing, masking or weighting at all)."""
    import torch

    images, channels, height, width = prepared.x.shape
    table, bounds = setup.table, []
    for i, pairs in enumerate(setup.plan):
        draws = int(table.stochastic and i < table.steps - 1) + int(i < setup.bootstrap_steps)
        volume = images * channels * sum(p.window.height * p.window.width for p in pairs)
        source, target = torch.ones(volume), torch.empty(volume)
        noise = torch.empty(images, channels, height, width)
        times = []
        for _ in range(repeats + 1):
            start = time.process_time()
            for _draw in range(draws):
                noise.normal_()
            target.copy_(source)
            source.copy_(target)
            times.append(time.process_time() - start)
        bounds.append(statistics.median(times[1:]))
    return statistics.mean(bounds)


def measure_setup(prepared, setup, repeats: int) -> dict:
    """Ops per step (profiled once), host seconds per step (median of `repeats` unprofiled runs) on the CPU and
    on the meta device (no arithmetic)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from semanticdraw_cli.fusion import sample

    def generators():
        return [torch.Generator("cpu").set_state(state) for state in prepared.generator_states]

    ops = []
    steps = sample(FreeDenoiser(), setup, prepared.x, generators())
    while True:
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            stats = next(steps, None)
        if stats is None:
            break
        ops.append(count_ops(profiler.events()))
    seconds = []
    for _ in range(repeats):
        last, per_step = time.process_time(), []
        for _state in sample(FreeDenoiser(), setup, prepared.x, generators()):
            now = time.process_time()
            per_step.append(now - last)
            last = now
        seconds.append(statistics.mean(per_step))
    pairs = [len(pairs) for pairs in setup.plan]
    return {"max_batch": setup.max_batch, "pairs_per_step": pairs, "dispatched_ops_per_step": [d for d, _ in ops],
            "all_ops_per_step": [a for _, a in ops], "host_seconds_per_step": statistics.median(seconds),
            "host_seconds_runs": seconds, "floor_seconds_per_step": floor_seconds(prepared, setup, repeats),
            **dict(zip(("meta_seconds_per_step", "meta_ops_per_step"),
                                                     dispatch_seconds(prepared, setup, repeats)))}


def measure_tree(repeats: int, canvases: list[str], control: bool = False) -> dict:
    """Every canvas at both batch sizes, with the code importable now (this checkout or a baseline's)."""
    import torch

    from semanticdraw_cli.render import Renderer

    torch.set_num_threads(1)
    renderer, rows = Renderer(device="cpu"), {}
    for canvas in canvases:
        width, height = (int(side) for side in canvas.split("x"))
        name = f"irworobongdo {canvas}" + (" control" if control else "")
        prepared = renderer.prepare(scene_of(width, height, control))
        every = max(len(pairs) for pairs in prepared.setup.plan) * len(prepared.seeds)
        for label, size in (("max_batch 8", 8), ("max_batch all", every)):
            setup = dataclasses.replace(prepared.setup, max_batch=size)
            rows[f"{name}, {label}"] = measure_setup(prepared, setup, repeats)
            row = rows[f"{name}, {label}"]
            print(f"{name}, {label}: CPU {row['dispatched_ops_per_step']} ops, {row['host_seconds_per_step'] * 1000:.1f} "
                  f"ms/step (floor {row['floor_seconds_per_step'] * 1000:.1f}); meta {row['meta_ops_per_step']} ops, "
                  f"{row['meta_seconds_per_step'] * 1000:.1f} ms/step",
                  file=sys.stderr)
    return rows


def slug(cpu: str) -> str:
    return "-".join(cpu.lower().replace("(r)", "").replace("(tm)", "").split()[:3])


def commit_of(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def measure_in(tree: Path, repeats: int, canvases: list[str], control: bool = False) -> dict:
    """This script's measuring part in a process that imports `tree`'s code."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "rows.json"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run([sys.executable, __file__, "--measure-only", str(out), "--repeats", str(repeats),
                        "--canvas", *canvases, *(["--control"] if control else [])], env=env, check=True)
        return json.loads(out.read_text())


def merged(rounds: list[dict]) -> dict:
    """One round's rows, with each row's seconds the median over the rounds (each round's own in `*_rounds`)."""
    rows = rounds[0]
    for name, row in rows.items():
        for key in ("host_seconds_per_step", "meta_seconds_per_step", "floor_seconds_per_step"):
            values = [r[name][key] for r in rounds]
            row[key], row[key.replace("_per_step", "_rounds")] = statistics.median(values), values
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="an earlier commit to measure in the same run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the steps per process (their median)")
    parser.add_argument("--rounds", type=int, default=1, help="processes per tree, taking turns (their median)")
    parser.add_argument("--canvas", nargs="+", default=list(CANVASES), help="WIDTHxHEIGHT of each scene")
    parser.add_argument("--control", action="store_true", help="with a whole-canvas tiny ControlNet")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--measure-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_only:
        args.measure_only.write_text(json.dumps(measure_tree(args.repeats, args.canvas, args.control)))
        return 0
    from semanticdraw_cli.report import cpu_name

    result = {"benchmark": "host_ops", "machine": {"cpu": cpu_name(), "threads": 1}, "target_ops": TARGET_OPS,
              "control": args.control, "trees": {}}
    trees = {"current": ROOT}
    with tempfile.TemporaryDirectory() as scratch:
        if args.baseline:
            trees["baseline"] = Path(scratch) / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(trees["baseline"]),
                            args.baseline], check=True, capture_output=True)
        try:
            rounds = {name: [] for name in trees}
            for _round in range(args.rounds):  # the trees take turns, so that a slow spell of the machine hits both
                for name, tree in trees.items():
                    rounds[name].append(measure_in(tree, args.repeats, args.canvas, args.control))
            for name, tree in trees.items():
                result["trees"][name] = {"commit": commit_of(tree), "rows": merged(rounds[name])}
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["baseline"])],
                               check=True)
    if args.baseline:
        current, baseline = result["trees"]["current"]["rows"], result["trees"]["baseline"]["rows"]
        result["host_seconds_ratio"] = {row: baseline[row]["host_seconds_per_step"]
                                        / current[row]["host_seconds_per_step"] for row in current}
        result["meta_seconds_ratio"] = {row: baseline[row]["meta_seconds_per_step"]
                                        / current[row]["meta_seconds_per_step"] for row in current}
        # the most any step loop could gain on the CPU over the baseline: its seconds over the floor's
        result["host_seconds_ratio_bound"] = {row: baseline[row]["host_seconds_per_step"]
                                              / current[row]["floor_seconds_per_step"] for row in current}
    for tree in result["trees"].values():
        for row in tree["rows"].values():
            row["within_target"] = max(row["meta_ops_per_step"]) <= TARGET_OPS
    kind = "host-ops-control" if args.control else "host-ops"
    out = args.out or RESULTS / f"{kind}-cpu-tiny-{slug(result['machine']['cpu'])}-2c.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
