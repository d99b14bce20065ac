"""Benchmarks of the fusion sampler (docs/architecture.md §4): the default plan against the work it saves.

    python benchmarks/run.py --workload cpu-small            # Irworobongdo 640×384, `small` preset, CPU
    python benchmarks/run.py --workload gpu-full             # 1280×768, `full-random` float16, CUDA only
    python benchmarks/run.py --workload memory-4k            # 4096×4096 one region, `tiny`: peak RSS
    python benchmarks/run.py --workload batch                # --images 4 shared batches vs 4 renders
    python benchmarks/run.py --workload families             # every family's tiny preset, 1280×768
    python benchmarks/run.py --workload gpu-sdxl             # full-random SDXL + Lightning 1024², CUDA only
    python benchmarks/run.py --workload gpu-flux             # full-random FLUX.1-schnell 1024² and 2048×1024

Every method of a workload runs in one process on the same model, canvas and seed: one warm-up each,
then `--repeats` rounds (methods interleaved, so a noisy neighbour slows all of them alike) and the
median. Writes benchmarks/results/<workload>-<machine>.json and prints a markdown table; `--readme`
also pastes the table into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from semanticdraw_cli.render import Renderer  # noqa: E402
from semanticdraw_cli.report import network_calls  # noqa: E402
from semanticdraw_cli.scene.types import Scene  # noqa: E402
from semanticdraw_cli.scene.loader import load_scene, scene_from_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IRWOROBONGDO = ROOT / "scenes" / "irworobongdo.yaml"
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "benchmarks" / "README.md"
PHASES = ("encode", "masks", "compile", "denoise", "decode")
LCM_STEPS = "[0, 4, 12, 25, 37]"


@dataclass(frozen=True)
class Method:
    name: str
    overrides: tuple[str, ...] = ()
    extrapolate_to: int | None = None  # measured over a few steps, scaled to this many
    own_windows: bool = False  # keep the method's own tile defaults rather than the workload's tile
    canvas: tuple[int, int] | None = None  # its own canvas (width, height) instead of the workload's


@dataclass(frozen=True)
class Workload:
    name: str
    preset: str
    width: int
    height: int
    overrides: tuple[str, ...]  # applied to every method
    methods: tuple[Method, ...]
    tile: tuple[str, ...] = ()  # tile overrides, for every method but those with their own windows
    dtype: str = "float32"
    needs_cuda: bool = False
    repeats: int | None = None  # overrides --repeats (e.g. one run of a 4K canvas)


def comparison_methods(md_steps: int) -> tuple[Method, ...]:
    """SemanticDraw's plans against classic MultiDiffusion, with and without LCM (the paper's table)."""
    md_measured = "[" + ", ".join(str(i) for i in range(md_steps)) + "]"
    return (
        Method("semanticdraw"),
        Method("plan: reference", ("sampler.plan=reference",)),
        Method("plan: regions", ("sampler.plan=regions",)),
        # MultiDiffusion with its published windows (64 latent px, stride 8): loader defaults for the method
        # (the loader gives `method: multidiffusion` no accelerator by default: ask for LCM explicitly)
        Method("MD + LCM", ("sampler.method=multidiffusion", "model.accelerator=lcm", f"sampler.steps={LCM_STEPS}",
                            "sampler.grid=50", "sampler.guidance=1.0"), own_windows=True),
        Method("MD", ("model.accelerator=none", "sampler.method=multidiffusion", f"sampler.steps={md_measured}",
                      "sampler.grid=50", "sampler.guidance=7.5"), extrapolate_to=50, own_windows=True),
    )


def family_methods() -> tuple[Method, ...]:
    """One row per model family with its default accelerator, plus its reference plan for the savings."""
    rows = []
    for family, accelerator in (("sd15", "LCM"), ("sdxl", "Lightning"), ("sd3", "Flash"), ("flux", "schnell"),
                                ("klein", "distilled")):
        rows.append(Method(f"{family} ({accelerator})", (f"model.family={family}",)))
        rows.append(Method(f"{family}, plan: reference", (f"model.family={family}", "sampler.plan=reference")))
    return tuple(rows)


def tile(size: int, stride: int) -> tuple[str, ...]:
    return (f"sampler.tile.size={size}", f"sampler.tile.stride={stride}")


def default_and_reference(canvases: dict[str, tuple[int, int] | None], *overrides: str) -> tuple[Method, ...]:
    """The default plan and the reference plan on each named canvas (None: the workload's)."""
    rows = []
    for label, canvas in canvases.items():
        prefix = f"{label}, " if label else ""
        rows.append(Method(f"{prefix}semanticdraw" if label else "semanticdraw", overrides, canvas=canvas))
        rows.append(Method(f"{prefix}plan: reference", (*overrides, "sampler.plan=reference"), canvas=canvas))
    return tuple(rows)


def workloads(md_steps: int) -> dict[str, Workload]:
    methods = comparison_methods(md_steps)
    return {
        "cpu-small": Workload("cpu-small", "small", 640, 384, (), methods, tile=tile(384, 192)),
        "gpu-full": Workload("gpu-full", "full-random", 1280, 768, (), methods, tile(768, 384), "float16", True),
        "memory-4k": Workload("memory-4k", "tiny", 4096, 4096, (), (Method("semanticdraw"),), repeats=1),
        "families": Workload("families", "tiny", 1280, 768, tile(768, 384), family_methods()),
        # The real SDXL and FLUX.1-schnell architectures (random weights, built on the GPU) at their own tile
        # (1024 / 512); the wide FLUX canvas has a 1024 stride: two windows side by side.
        "gpu-sdxl": Workload("gpu-sdxl", "full-random", 1024, 1024, ("model.family=sdxl",),
                             default_and_reference({"": None}), dtype="float16", needs_cuda=True),
        "gpu-flux": Workload("gpu-flux", "full-random", 1024, 1024, ("model.family=flux",), default_and_reference(
            {"1024×1024": None, "2048×1024": (2048, 1024)}), dtype="bfloat16", needs_cuda=True),
        "batch": Workload("batch", "tiny", 640, 384, tile(384, 192), (
            Method("4 images, shared batches", ("sampler.images=4",)),
            Method("4 renders, one image each"),
        )),
    }


# --- scenes -----------------------------------------------------------------------------------------


def scaled_shapes(scene: Scene, x_factor: float, y_factor: float) -> Scene:
    """Pixel-unit shapes drawn for 1280×768 stretched onto a canvas x_factor × y_factor times as large."""
    if x_factor == y_factor == 1.0:
        return scene
    regions = []
    for region in scene.regions:
        mask = region.mask
        if mask.kind in ("rect", "ellipse", "polygon") and not mask.fractional:
            factors = (x_factor, y_factor) * (len(mask.coords) // 2)  # (x, y, w|rx, h|ry) or x, y pairs
            mask = dataclasses.replace(mask, coords=tuple(c * f for c, f in zip(mask.coords, factors)))
        regions.append(dataclasses.replace(region, mask=mask))
    return dataclasses.replace(scene, regions=tuple(regions))


def build_scene(workload: Workload, method: Method) -> Scene:
    """The workload's scene with the method's overrides (Irworobongdo, or one full-canvas region at 4K)."""
    tiles = () if method.own_windows else workload.tile
    overrides = [f"model.checkpoint={workload.preset}", *workload.overrides, *tiles, *method.overrides]
    if workload.name == "memory-4k":
        data = {
            "version": 1,
            "canvas": {"width": workload.width, "height": workload.height},
            "regions": [{"prompt": "a vast field of flowers", "mask": {"rect": [0, 0, 1, 1], "units": "fraction"}}],
        }
        return scene_from_dict(data, None, overrides)
    width, height = method.canvas or (workload.width, workload.height)
    overrides += [f"canvas.width={width}", f"canvas.height={height}"]
    if method.canvas and workload.name == "gpu-flux":
        overrides.append(f"sampler.tile.stride={height}")  # 2048×1024: two 1024 px windows
    scene = load_scene(IRWOROBONGDO, overrides)
    return scaled_shapes(scene, width / 1280, height / 768)


# --- measuring --------------------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) of this process."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # process lifetime, KiB on Linux


def measure(renderer: Renderer, scenes: list[Scene], method: Method) -> dict:
    """One timed render per scene (several: sequential renders): counts, phase seconds, peak memory, latents."""
    cuda = renderer.device is not None and renderer.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    reset_peak_rss()
    wall, cpu = time.perf_counter(), time.process_time()
    reports, latents = [], []
    for scene in scenes:
        results = renderer.render(scene)
        reports.append(results[0].report)
        latents += [r.latent for r in results]
    if cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    run = {
        "total": wall,
        "cpu_seconds": cpu,
        **{phase: sum(r["seconds"].get(phase, 0.0) for r in reports) for phase in PHASES},
        "network_calls": sum(network_calls(r) for r in reports),
        **{key: sum(r[key] for r in reports) for key in ("batch_items", "latent_pixels", "pairs_active", "pairs_total")},
        "steps": len(reports[0]["steps"]),
        "peak_memory_bytes": max(r["peak_memory_bytes"] for r in reports) if cuda else peak_rss_bytes(),
        **rates(reports),
    }
    if method.extrapolate_to:  # per-step costs scale, the rest (encode, masks, decode) does not
        scale = method.extrapolate_to / run["steps"]
        for key in ("network_calls", "batch_items", "latent_pixels", "pairs_active", "pairs_total"):
            run[key] = round(run[key] * scale)
        run["total"] += run["denoise"] * (scale - 1)
        run["cpu_seconds"] += run["denoise"] * (scale - 1)
        run["denoise"] *= scale
        run["measured_steps"], run["steps"] = run["steps"], method.extrapolate_to
    run["latent"] = torch.stack(latents)
    return run


def rates(reports: list[dict]) -> dict:
    """The denoise phase's FLOPs, batch size, achieved TFLOP/s and share of the device's peak (the reports' `flops`)."""
    denoise_flops = sum(r["flops"]["denoise"] for r in reports)
    seconds = sum(r["seconds"]["denoise"] for r in reports)
    peak = reports[0]["flops"]["peak_tflops_per_second"]
    achieved = denoise_flops / seconds / 1e12 if seconds > 0 else 0.0
    return {"denoise_flops": denoise_flops, "tflops_per_second": achieved, "peak_tflops_per_second": peak,
            "fraction_of_peak": achieved / peak if peak else 0.0, "max_batch": reports[0]["network"]["batch"],
            "oom_halvings": sum(r["oom_halvings"] for r in reports)}


def median_run(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if k != "latent" and isinstance(runs[0][k], (int, float))]
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["total_all_repeats"] = [round(r["total"], 3) for r in runs]
    return out


def ratios(row: dict, base: dict) -> dict:
    keys = ("network_calls", "batch_items", "latent_pixels", "total", "denoise", "cpu_seconds", "peak_memory_bytes")
    return {k: round(row[k] / base[k], 4) if base.get(k) else None for k in keys}


def machine(workload: Workload, renderer: Renderer) -> dict:
    import diffusers
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() and renderer.device.startswith("cuda") else None,
        "device": renderer.device,
        "dtype": workload.dtype,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "preset": workload.preset,
        "canvas": [workload.width, workload.height],
        "load_average_start": os.getloadavg(),
    }
    label = info["gpu"] or f"{cpu}-{info['cores']}c"
    info["slug"] = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)|cpu|@.*", "", label.lower())).strip("-")
    return info


def run_workload(workload: Workload, args) -> dict:
    device = "cuda" if workload.needs_cuda else args.device
    renderer = Renderer(device=device, dtype=workload.dtype)
    methods = list(workload.methods)
    if args.methods:
        methods = [m for m in methods if m.name in args.methods or m.name == methods[0].name]
    for size in args.max_batch_sweep:
        methods.append(Method(f"semanticdraw, max_batch={size}", (f"sampler.max_batch={size}",)))
    scenes = {m.name: [build_scene(workload, m)] for m in methods}
    if workload.name == "batch":  # image k of a 4-image scene uses seed + k: render those one by one
        one = scenes[methods[1].name][0]
        scenes[methods[1].name] = [
            dataclasses.replace(one, sampler=dataclasses.replace(one.sampler, seed=one.sampler.seed + k)) for k in range(4)
        ]
    repeats = workload.repeats or args.repeats
    info = machine(workload, renderer)  # load average before the runs
    log(f"{workload.name}: {len(methods)} methods, warm-up + {repeats} repeats")
    load_seconds = {}
    for m in methods:  # warm-up: loads each model once, first-call allocations, lazy imports
        load_seconds[m.name] = renderer.adapter(scenes[m.name][0])[1]  # 0 for a model loaded by an earlier method
        log(f"  model for {m.name}: {load_seconds[m.name]:.1f}s to load (or build)")
        if workload.repeats != 1:  # a single-run workload (4K canvas) only loads its model first
            start = time.perf_counter()
            measure(renderer, scenes[m.name], m)
            log(f"  warm-up {m.name}: {time.perf_counter() - start:.1f}s")
    runs: dict[str, list[dict]] = {m.name: [] for m in methods}
    for repeat in range(repeats):
        for m in methods:
            runs[m.name].append(measure(renderer, scenes[m.name], m))
            log(f"  repeat {repeat + 1} {m.name}: {runs[m.name][-1]['total']:.1f}s")
    base = median_run(runs[methods[0].name])
    rows = []
    for m in methods:
        row = {"method": m.name, "overrides": list(m.overrides), "extrapolated": bool(m.extrapolate_to),
               "canvas": list(m.canvas or (workload.width, workload.height)), "load_seconds": load_seconds[m.name],
               **median_run(runs[m.name])}
        scene = scenes[m.name][0]
        sampler = scene.sampler
        row["sampler"] = {"method": sampler.method, "plan": sampler.plan, "steps": list(sampler.steps),
                          "grid": sampler.grid, "guidance": sampler.guidance, "tile": [sampler.tile.size, sampler.tile.stride],
                          "max_batch": sampler.max_batch, "images": sampler.images,
                          "accelerator": scene.model.accelerator.name}
        row["ratio_to_default"] = ratios(row, base)
        rows.append(row)
    result = {"workload": workload.name, "machine": info, "repeats": repeats, "rows": rows}
    result["machine"]["load_average_end"] = os.getloadavg()
    checks = {}
    names = [m.name for m in methods]
    if "plan: reference" in names:
        diff = (runs["semanticdraw"][-1]["latent"] - runs["plan: reference"][-1]["latent"]).abs().max()
        checks["default_vs_reference_max_abs_latent_diff"] = float(diff)
    if workload.name == "batch":
        diff = (runs[names[0]][-1]["latent"] - runs[names[1]][-1]["latent"]).abs().max()
        checks["batched_vs_sequential_max_abs_latent_diff"] = float(diff)
        checks["throughput_ratio_batched_over_sequential"] = round(rows[1]["total"] / rows[0]["total"], 3)
    result["checks"] = checks
    result["reference_pairs"] = [
        {"default": base.name, "reference": ref.name,
         "max_abs_latent_diff": float((runs[base.name][-1]["latent"] - runs[ref.name][-1]["latent"]).abs().max()),
         "speedup": round(by_row[ref.name]["total"] / by_row[base.name]["total"], 3),
         "latent_pixels_ratio": round(by_row[base.name]["latent_pixels"] / by_row[ref.name]["latent_pixels"], 4)}
        for base, ref in reference_pairs(methods)
        for by_row in [{r["method"]: r for r in rows}]
    ]
    result["targets"] = targets(rows)
    return result


def reference_pairs(methods: list[Method]) -> list[tuple[Method, Method]]:
    """(method, its twin with sampler.plan=reference): same overrides otherwise, same canvas."""
    by_key = {(m.overrides, m.canvas): m for m in methods}
    pairs = []
    for m in methods:
        if "sampler.plan=reference" in m.overrides:
            base = by_key.get((tuple(o for o in m.overrides if o != "sampler.plan=reference"), m.canvas))
            if base is not None:
                pairs.append((base, m))
    return pairs


def targets(rows: list[dict]) -> dict:
    """Issue 4's targets for the default plan, where the compared rows were measured."""
    by_name = {r["method"]: r for r in rows}
    base, out = rows[0], {}
    if "plan: reference" in by_name:
        ref = by_name["plan: reference"]
        pixels = base["latent_pixels"] / ref["latent_pixels"]
        speed = ref["total"] / base["total"]
        out["latent_pixels_vs_reference"] = {"value": round(pixels, 4), "target": "<= 0.36", "met": pixels <= 0.36}
        out["speedup_vs_reference"] = {"value": round(speed, 3), "target": ">= 2.5", "met": speed >= 2.5}
        cpu_speed = ref["cpu_seconds"] / base["cpu_seconds"]
        out["cpu_time_speedup_vs_reference"] = {"value": round(cpu_speed, 3), "target": ">= 2.5", "met": cpu_speed >= 2.5}
    if "MD" in by_name:
        speed = by_name["MD"]["total"] / base["total"]
        out["speedup_vs_md_ddim50"] = {"value": round(speed, 2), "target": ">= 40", "met": speed >= 40}
    return out


# --- output -----------------------------------------------------------------------------------------


def table(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"**{result['workload']}** — {m['gpu'] or m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads), "
        f"`{m['preset']}` {m['dtype']}, canvas {m['canvas'][0]}×{m['canvas'][1]}, torch {m['torch']}, "
        f"diffusers {m['diffusers']}, median of {result['repeats']}, load average {m['load_average_start'][0]:.1f}"
        f"→{m['load_average_end'][0]:.1f}",
        "",
        "| method | steps | network calls | batch items | latent Mpx | encode s | masks s | denoise s | decode s "
        "| total s | CPU s | peak MiB | TFLOP/s | × default time | × default Mpx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        name = r["method"] + (" (extrapolated)" if r["extrapolated"] else "")
        q = r["ratio_to_default"]
        lines.append(
            f"| {name} | {r['steps']:.0f} | {network_calls(r):.0f} | {r['batch_items']:.0f} | {r['latent_pixels'] / 1e6:.3f} "
            f"| {r['encode']:.2f} | {r['masks']:.3f} | {r['denoise']:.1f} | {r['decode']:.2f} | {r['total']:.1f} "
            f"| {r['cpu_seconds']:.1f} | {r['peak_memory_bytes'] / 2**20:.0f} | {r['tflops_per_second']:.3g} "
            f"| {q['total']:.2f} | {q['latent_pixels']:.2f} |"
        )
    if result["checks"]:
        lines += ["", "Checks: " + ", ".join(f"{k} = {v:.3g}" for k, v in result["checks"].items())]
    if result.get("reference_pairs"):
        lines += ["", "Default plan against `plan: reference`: " + "; ".join(
            f"{p['default']}: {p['speedup']:.2f}× faster, {p['latent_pixels_ratio']:.2f}× the latent pixels, "
            f"latents differ by {p['max_abs_latent_diff']:.2g}" for p in result["reference_pairs"])]
    if result["targets"]:
        lines += ["", "Targets: " + ", ".join(
            f"{k} {t['value']} ({t['target']}: {'met' if t['met'] else 'missed'})" for k, t in result["targets"].items())]
    return "\n".join(lines)


def paste_into_readme(workload: str, markdown: str) -> None:
    """Replace the block between `<!-- results:NAME -->` and `<!-- /results:NAME -->` (appended if absent)."""
    start, end = f"<!-- results:{workload} -->", f"<!-- /results:{workload} -->"
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    README.write_text(text)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", required=True, choices=list(workloads(2)))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method after one warm-up (median)")
    parser.add_argument("--methods", nargs="*", help="only these methods (the default plan always runs)")
    parser.add_argument("--md-steps", type=int, default=2, help="steps measured for MD (DDIM 50), extrapolated to 50")
    parser.add_argument("--max-batch-sweep", type=lambda s: [int(v) for v in s.split(",")], default=[],
                        help="also run the default plan at these sampler.max_batch values, e.g. 4,8,16,21")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/<workload>-<machine>.json)")
    parser.add_argument("--readme", action="store_true", help="paste the table into benchmarks/README.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    workload = workloads(args.md_steps)[args.workload]
    if workload.needs_cuda and not torch.cuda.is_available():
        log(f"{workload.name} needs CUDA, and none is available here")
        return 2
    result = run_workload(workload, args)
    out = args.out or RESULTS / f"{workload.name}-{result['machine']['slug']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    markdown = table(result)
    print(markdown)
    log(f"wrote {out}")
    if args.readme:
        paste_into_readme(workload.name, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
