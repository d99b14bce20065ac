"""Issue 22: what region LoRAs cost, and grouping against mixed-adapter batches, measured side by side.

    python benchmarks/region_loras.py --preset small --threads 1 --repeats 3 --out benchmarks/results/region-loras-cpu-small-MACHINE.json

A 4-region scene (plus a background prompt) rendered with no LoRA, with 2 regions carrying different LoRAs,
and with 4 different LoRAs. Each LoRA row runs two ways:
- grouping (what the renderer does): a call holds items of one LoRA set; `set_adapters` before each call;
- mixed: a call holds items of every LoRA set, each item routed through its own adapter by PEFT's mixed-batch
  forward (`adapter_names` per item), so a step makes the calls of the scene without LoRAs.
Random LoRAs (rank 16, every attention projection) built with `presets.save_random_lora`. Rows interleave
(a busy neighbour slows each alike); the median of `--repeats` after one warm-up render that loads the model
and every LoRA. On a shared CPU the process CPU seconds of each render are recorded beside the wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import run  # benchmarks/run.py: machine facts

ROWS = (("no LoRA", 0, "grouping"), ("2 LoRAs, grouping", 2, "grouping"), ("2 LoRAs, mixed", 2, "mixed"),
        ("4 LoRAs, grouping", 4, "grouping"), ("4 LoRAs, mixed", 4, "mixed"))


def scene_dict(preset: str, width: int, height: int, loras: list[str]) -> dict:
    """Four side-by-side regions over a background prompt; the first len(loras) regions carry one LoRA each."""
    regions = []
    for i, prompt in enumerate(("a red fox", "a tall pine tree", "a wooden cabin", "a snowy mountain")):
        region = {"prompt": prompt, "mask": {"rect": [i / 4, 0.1, 0.25, 0.8], "units": "fraction"}}
        if i < len(loras):
            region["loras"] = [{"lora": loras[i], "weight": 0.8}]
        regions.append(region)
    return {"canvas": {"width": width, "height": height}, "model": {"family": "sd15", "checkpoint": preset},
            "sampler": {"tile": {"size": height, "stride": height // 2}}, "background": {"prompt": "a winter valley"},
            "regions": regions}


def make_loras(preset: str, folder: Path, count: int) -> list[str]:
    import diffusers
    import torch

    from semanticdraw_cli.families import presets

    unet = diffusers.UNet2DConditionModel.from_pretrained(presets.ensure_preset("sd15", preset) / "unet")
    paths = []
    for i in range(count):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(i)
            presets.save_random_lora(unet, folder / str(i), diffusers.StableDiffusionPipeline, rank=16)
        paths.append(str(folder / str(i) / "pytorch_lora_weights.safetensors"))
    return paths


class Mixed(tuple):
    """The per-item LoRA sets of one mixed call (each a region_loras.Variant or None)."""


@contextmanager
def mixed_batches():
    """Calls that mix LoRA sets: the batcher ignores variants and each item runs through its own adapter."""
    from semanticdraw_cli import fusion, step_index
    from semanticdraw_cli.families import region_loras

    from peft.tuners.lora import LoraLayer

    chunks, conditioning, activate = step_index.chunks, fusion.conditioning, region_loras.activate
    hooks: list = []

    def mixed_conditioning(setup, pairs, step=0, shifts=(), regions=None, lines=None):
        items = conditioning(setup, pairs, step, shifts, regions, lines)
        per_item = Mixed(setup.variants[p.region] if setup.variants else None for p in pairs)
        return dataclasses.replace(items, variant=per_item)

    def mixed_activate(adapter, variant):
        for hook in hooks:
            hook.remove()
        hooks.clear()
        if not isinstance(variant, Mixed):
            return activate(adapter, variant)
        state = region_loras.loaded(adapter)
        names = sorted(state.names)
        weights = {name: w for v in variant if v for name, w in v}
        network = adapter.network
        network.enable_lora()
        network.set_adapters(names, [weights.get(name, 0.0) for name in names])
        state.active = ()
        per_item = ["__base__" if v is None else v[0][0] for v in variant]  # one LoRA per region here

        def pre_hook(module, args, kwargs):  # the guidance batch is [uncond..., cond...]: twice the items
            kwargs["adapter_names"] = per_item * (args[0].shape[0] // len(per_item))
            return args, kwargs

        for module in network.modules():
            if isinstance(module, LoraLayer):
                hooks.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))

    step_index.chunks = lambda items, pairs, size, variants=(), extra=None: chunks(items, pairs, size, (), extra)
    fusion.conditioning = mixed_conditioning
    region_loras.activate = mixed_activate
    try:
        yield
    finally:
        step_index.chunks, fusion.conditioning, region_loras.activate = chunks, conditioning, activate
        for hook in hooks:
            hook.remove()


def measure(renderer, scene, mode: str) -> dict:
    from contextlib import nullcontext

    with mixed_batches() if mode == "mixed" else nullcontext():
        start, cpu = time.perf_counter(), time.process_time()
        result = renderer.render(scene)[0]
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
    report = result.report
    return {"total": total, "cpu_seconds": cpu, "denoise": report["seconds"]["denoise"], "network_calls": report["network_calls"],
            "calls_per_step": [step["network_calls"] for step in report["steps"]],
            "batch_items": report["batch_items"], "latent": result.latent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--canvas", default="768x384")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import torch

    from semanticdraw_cli.render import Renderer
    from semanticdraw_cli.scene.dicts import scene_from_dict

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.canvas.split("x"))
    renderer = Renderer(device=args.device, dtype="float32")
    folder = Path(tempfile.mkdtemp(prefix="region-loras-"))
    loras = make_loras(args.preset, folder, 4)
    scenes = {name: scene_from_dict(scene_dict(args.preset, width, height, loras[:count]), folder / "scene.yaml")
              for name, count, _ in ROWS}
    workload = run.Workload("region-loras", args.preset, width, height, (), (), dtype="float32")
    result = {"workload": "region-loras", "machine": run.machine(workload, renderer), "rows": []}
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in ROWS}
    measure(renderer, scenes[ROWS[-2][0]], "grouping")  # warm-up: loads the model and every LoRA
    for _ in range(args.repeats):
        for name, _, mode in ROWS:
            runs[name].append(measure(renderer, scenes[name], mode))
            run.log(f"  {name}: {runs[name][-1]['total']:.2f} s, {runs[name][-1]['network_calls']} calls")
    base = statistics.median(r["denoise"] for r in runs["no LoRA"])
    base_cpu = statistics.median(r["cpu_seconds"] for r in runs["no LoRA"])
    for name, count, mode in ROWS:
        rows = runs[name]
        denoise = statistics.median(r["denoise"] for r in rows)
        grouped = runs[name.replace("mixed", "grouping")][-1]["latent"]
        plain = runs["no LoRA"][-1]["latent"]
        result["rows"].append({
            "row": name, "loras": count, "mode": mode, "denoise_seconds": denoise,
            "total_seconds": statistics.median(r["total"] for r in rows), "denoise_vs_no_lora": denoise / base,
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in rows),
            "cpu_vs_no_lora": statistics.median(r["cpu_seconds"] for r in rows) / base_cpu,
            "denoise_runs": [r["denoise"] for r in rows], "network_calls": rows[-1]["network_calls"],
            "calls_per_step": rows[-1]["calls_per_step"], "batch_items": rows[-1]["batch_items"],
            "max_latent_difference_vs_grouping": float((rows[-1]["latent"] - grouped).abs().max()),
            "max_latent_difference_vs_no_lora": float((rows[-1]["latent"] - plain).abs().max()),
        })
    result["machine"]["load_average_end"] = __import__("os").getloadavg()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["rows"]:
        print(f"| {row['row']} | {row['network_calls']} | {row['calls_per_step']} | {row['denoise_seconds']:.2f} | "
              f"{row['denoise_vs_no_lora']:.2f}× | {row['cpu_vs_no_lora']:.2f}× | {row['max_latent_difference_vs_grouping']:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
