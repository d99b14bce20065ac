"""The GPU smoke check: the CUDA-only paths no CPU test reaches, each checked once on a real-size model.

Run by benchmarks/gpu_smoke.sh on a lent GPU (benchmarks/README.md, "GPU smoke"). On the `full-random` SDXL
preset (built straight on the GPU, nothing downloaded) it renders one small scene and checks, in order:

1. events      the steps are timed by CUDA events: every step has its device seconds, summing to `denoise`
   repeatable  the same scene rendered again gives the same bits (the step's scatter adds in a fixed order)
2. auto-batch  `max_batch: auto` probed the memory per item and put all of a step's items of a shape in one call
3. oom         with the process's memory capped, a call that runs out of memory is retried with half the batch
               (`oom_halvings` > 0), and the picture equals the one rendered at the final batch size
4. offload     `model.offload: model` gives the picture of the model kept on the GPU
5. compile     `--compile` (mode reduce-overhead: CUDA graphs) gives the eager picture, timed apart in `compile`
6. reference-offload  a reference picture (a random IP-Adapter built for the preset's UNet) acts, and gives the
               same picture under `model.offload: model` and `sequential` (the adapter loads with the hooks lifted)

Every check writes its row to the JSON as soon as it ends, so a check cut short keeps the rows before.
`--dry-run` prints the plan and exits; `--device cpu --preset tiny` runs what a CPU can (1, repeatable, 2 and 5
with the aot_eager backend; 3, 4 and 6 say why they are skipped), the script's self-test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHECKS = ("events", "repeatable", "auto-batch", "oom", "offload", "compile", "reference-offload")
SCENE = {  # three regions over two windows; with 2 images, 16 items a step at most
    "model": {"family": "sdxl"},
    "background": {"prompt": "a harbour at dusk"},
    "regions": [
        {"prompt": "a red lighthouse", "mask": {"rect": [0.05, 0.1, 0.3, 0.8], "units": "fraction"}},
        {"prompt": "a fishing boat", "mask": {"ellipse": [0.6, 0.7, 0.2, 0.15], "units": "fraction"}},
        {"prompt": "seagulls in the sky", "mask": {"rect": [0.4, 0.0, 0.6, 0.3], "units": "fraction"}},
    ],
}
SIZES = {"full-random": (1536, 1024, 1024, 512), "tiny": (384, 256, 256, 128)}  # canvas w, h; tile, stride


def scene_for(preset: str, **sampler):
    from semanticdraw_cli.scene.loader import scene_from_dict

    width, height, tile, stride = SIZES[preset]
    data = {**SCENE, "canvas": {"width": width, "height": height},
            "model": {**SCENE["model"], "checkpoint": preset, **sampler.pop("model", {})},
            "regions": sampler.pop("regions", SCENE["regions"]),
            "sampler": {"seed": 3, "images": 2, "tile": {"size": tile, "stride": stride}, **sampler}}
    return scene_from_dict(data, source=None, allow_outside=True)  # reference-offload: its picture in a temporary folder


def difference(a, b) -> float:
    """Largest absolute difference of two latents, relative to the first's largest magnitude."""
    return float((a.float() - b.float()).abs().max() / a.float().abs().max().clamp_min(1e-12))


class Smoke:
    """The checks, sharing one renderer (one model build) and their results."""

    def __init__(self, args: argparse.Namespace):
        import torch

        from semanticdraw_cli import defaults
        from semanticdraw_cli.render import Renderer

        defaults.COMPILE_BACKEND = args.compile_backend
        self.args, self.torch, self.cuda = args, torch, args.device.startswith("cuda")
        self.renderer = Renderer(device=args.device, dtype=args.dtype)
        self.base = None  # the default render, for comparisons

    def render(self, scene):
        return self.renderer.render(scene)

    def events(self) -> str:
        scene = scene_for(self.args.preset)
        prepared = self.renderer.prepare(scene)
        states = list(self.renderer.steps(prepared))
        if self.cuda:
            assert all(state.events is not None for state in states), "a CUDA step without its events"
        results = self.renderer.finish(prepared, states[-1], states)
        self.base = results
        seconds = results[0].report["seconds"]
        assert all(s > 0 for s in seconds["steps"]), f"step seconds {seconds['steps']}"
        assert abs(sum(seconds["steps"]) - seconds["denoise"]) < 1e-6, "the steps do not sum to denoise"
        return f"steps {', '.join(f'{s:.3f}' for s in seconds['steps'])} s ({'CUDA events' if self.cuda else 'host clock'})"

    def repeatable(self) -> str:
        """Overlapping windows add into the same pixels; on CUDA `index_add_` would add them with atomics, in any
        order, and so give other bits from one run to the next (`step_index.add_at` keeps one order)."""
        again = self.render(scene_for(self.args.preset))
        for first, second in zip(self.base, again, strict=True):
            off = difference(first.latent, second.latent)
            assert self.torch.equal(first.latent, second.latent), f"a second render differs by {off:.2e}"
        return f"{len(again)} images, latents bit-equal to the first render's"

    def auto_batch(self) -> str:
        from semanticdraw_cli import defaults

        report = self.base[0].report
        batch, most = report["network"]["batch"], max(step["batch_items"] for step in report["steps"])
        calls = [step["network_calls"] for step in report["steps"]]
        if not self.cuda:
            assert batch == min(defaults.AUTO_BATCH_OFF_CUDA, most), f"off CUDA auto is {defaults.AUTO_BATCH_OFF_CUDA}"
            return f"batch {batch} off CUDA (no probe); calls a step {calls}"
        assert self.renderer._measured.item_bytes, "max_batch auto measured no bytes per item on CUDA"
        assert batch == most, f"auto chose {batch} items a call where a step needs {most}"
        assert calls == [1] * len(calls), f"one window shape, yet {calls} calls a step"  # the scene's windows share a shape
        per_item = max(self.renderer._measured.item_bytes.values())
        return f"batch {batch} (probe: {per_item / 2**20:.0f} MiB an item); calls a step {calls}"

    def oom(self) -> str:
        torch = self.torch
        if not self.cuda:
            return "skipped: running out of GPU memory needs CUDA"
        per_item = max(self.renderer._measured.item_bytes.values())
        final = self.render(scene_for(self.args.preset, max_batch=2))[0].latent
        prepared = self.renderer.prepare(scene_for(self.args.preset, max_batch=16))
        device = torch.device(self.args.device)
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(device).total_memory
        cap = torch.cuda.memory_reserved(device) + 3 * per_item  # two items fit, four do not
        torch.cuda.set_per_process_memory_fraction(min(cap / total, 1.0), device)
        try:
            states = list(self.renderer.steps(prepared))
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, device)
        results = self.renderer.finish(prepared, states[-1], states)
        halvings = results[0].report["oom_halvings"]
        assert halvings > 0, f"no call ran out of memory under a cap of {cap / 2**30:.1f} GiB"
        off = difference(final, results[0].latent)
        assert off < 1e-2, f"the halved render differs from max_batch 2 by {off:.2e}"
        return f"{halvings} halvings to batch {results[0].report['steps'][-1]['max_batch']}; latent off by {off:.1e}"

    def offload(self) -> str:
        if not self.cuda:
            return "skipped: model.offload moves weights to a CUDA GPU"
        offloaded = self.render(scene_for(self.args.preset, model={"offload": "model"}))[0].latent
        off = difference(self.base[0].latent, offloaded)
        assert off < 1e-2, f"offloaded latent differs by {off:.2e}"
        return f"latent off by {off:.1e}"

    def compile(self) -> str:
        results = self.render(scene_for(self.args.preset, compile=True))
        report = results[0].report
        if self.cuda and self.args.compile_backend == "inductor":
            assert report["network"]["cuda_graphs"], "reduce-overhead did not replay CUDA graphs"
        assert report["seconds"]["compile"] > 0, "no compile time reported"
        off = difference(self.base[0].latent, results[0].latent)
        assert off < 2e-2, f"compiled latent differs by {off:.2e}"
        return f"compile {report['seconds']['compile']:.1f} s, denoise {report['seconds']['denoise']:.2f} s, latent off by {off:.1e}"

    def reference_offload(self) -> str:
        """One image; the offloaded models are loaded apart (the model key holds `offload`)."""
        if not self.cuda:
            return "skipped: model.offload moves weights to a CUDA GPU"
        import tempfile

        import numpy as np
        from PIL import Image

        from semanticdraw_cli.families import ip_adapter

        folder = Path(tempfile.mkdtemp(prefix="gpu-smoke-ip-adapter-"))
        network = self.renderer.adapter(scene_for(self.args.preset))[0].network
        weights = ip_adapter.build_random_adapter(network, folder)
        Image.fromarray(np.random.default_rng(3).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(folder / "look.png")
        regions = [dict(SCENE["regions"][0], reference={"image": str(folder / "look.png"), "adapter": str(weights)}),
                   *SCENE["regions"][1:]]
        plain = self.render(scene_for(self.args.preset, images=1))[0].latent
        latents = {offload: self.render(scene_for(self.args.preset, images=1, regions=regions,
                                                  model={"offload": offload}))[0].latent
                   for offload in ("none", "model", "sequential")}
        acts = difference(plain, latents["none"])
        assert acts > 1e-3, f"the reference changes the latent by only {acts:.2e}"  # one that did not act: 0
        offs = {offload: difference(latents["none"], latent) for offload, latent in latents.items() if offload != "none"}
        assert max(offs.values()) < 1e-2, f"offloaded latents differ: {offs}"
        return f"reference changes the latent by {acts:.1e}; " + ", ".join(f"{k} off by {v:.1e}" for k, v in offs.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--preset", choices=sorted(SIZES), default="full-random")
    parser.add_argument("--compile-backend", default="inductor", help="aot_eager: trace without building kernels")
    parser.add_argument("--only", nargs="*", choices=CHECKS, help="a subset of the checks, in their order")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu-smoke.json")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; load nothing")
    args = parser.parse_args(argv)
    checks = [name for name in CHECKS if not args.only or name in args.only]
    width, height, tile, stride = SIZES[args.preset]
    plan = (f"sdxl {args.preset} on {args.device} in {args.dtype}, {width}x{height}, tile {tile}/{stride}, 2 images; "
            f"checks: {', '.join(checks)}")
    print(f"gpu_smoke: {plan}", file=sys.stderr)
    if args.dry_run:
        return 0
    smoke, rows, failed = Smoke(args), [], []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in checks:
        start = time.perf_counter()
        try:
            detail, ok = getattr(smoke, name.replace("-", "_"))(), True
        except Exception as error:  # every failure is a row; the remaining checks still run
            detail, ok = f"{type(error).__name__}: {error}", False
            failed.append(name)
        rows.append({"check": name, "ok": ok, "detail": detail, "seconds": round(time.perf_counter() - start, 2)})
        print(f"gpu_smoke: {'ok    ' if ok else 'FAILED'} {name}: {detail} ({rows[-1]['seconds']} s)", file=sys.stderr)
        args.out.write_text(json.dumps({"plan": plan, "rows": rows}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
