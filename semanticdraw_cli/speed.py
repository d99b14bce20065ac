"""The speed levers of a render around its network (architecture.md §4), applied by `Renderer.prepare`.

`configure` runs the network with the scene's levers (compile, fused QKV, channels-last), sizes
`sampler.max_batch: auto`, compiles (and captures CUDA graphs) for the render's one batch shape before any
step is timed, and counts the FLOPs of one item per window shape. What it measures of a loaded model is kept
in `Measured`, so the next render of the same shapes pays none of it.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from semanticdraw_cli import batching, defaults, flops
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families.network import Levers
from semanticdraw_cli.fusion import FusionSetup, conditioning, variant
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.families.base import Denoiser
    from semanticdraw_cli.plan import Pair
    from semanticdraw_cli.scene.types import Sampler
else:
    torch = lazy_module("torch")


@dataclass
class Measured:
    """What a renderer measured of its loaded models, kept between renders: each costs network calls."""

    item_bytes: dict[Hashable, int] = field(default_factory=dict)  # (model, guided, (h, w)) -> CUDA bytes per item
    item_flops: dict[Hashable, int] = field(default_factory=dict)  # (model, guided, (h, w)) -> FLOPs of one item
    warm: set[Hashable] = field(default_factory=set)  # (model, guided, levers, (h, w), batch, variant) compiled


def levers(sampler: Sampler, device: torch.device) -> Levers:
    """The scene's levers; `compile: true` is CUDA graphs on CUDA, inductor's default mode elsewhere."""
    mode = sampler.compile
    if mode is True:
        mode = defaults.COMPILE_MODE_CUDA if device.type == "cuda" else defaults.COMPILE_MODE_OTHER
    return Levers(mode or None, sampler.fuse_qkv, sampler.channels_last, defaults.COMPILE_BACKEND)


def shapes(plans: tuple[tuple[Pair, ...], ...]) -> dict[tuple[int, int], Pair]:
    """Each window shape of the plan (largest first) with one pair that has it."""
    found: dict[tuple[int, int], Pair] = {}
    for pairs in plans:
        for pair in pairs:
            found.setdefault((pair.window.height, pair.window.width), pair)
    return dict(sorted(found.items(), key=lambda item: -item[0][0] * item[0][1]))


def variant_shapes(setup: FusionSetup) -> dict[tuple, Pair]:
    """Each (window height, width, network variant) of the plan with one pair that has it: another LoRA set
    changes the network's modules, so a compiled network is warmed up for each."""
    found: dict[tuple, Pair] = {}
    for pairs in setup.plan:
        for pair in pairs:
            found.setdefault((pair.window.height, pair.window.width, variant(setup, pair.region)), pair)
    return found


def configure(
    denoiser: Denoiser, setup: FusionSetup, sampler: Sampler, images: int, measured: Measured, model: Hashable,
    peak_tflops: float | None = None,
) -> tuple[FusionSetup, dict[str, float], dict[str, Any]]:
    """(setup with its batch size, seconds of `compile` and `flops`, what the report says of the network)."""
    device, key = setup.masks.device, (model, setup.uncond is not None)
    chosen = levers(sampler, device)
    optimize = getattr(denoiser, "optimize", None)
    if optimize is not None:
        optimize(chosen)
    elif chosen != Levers(backend=chosen.backend):
        raise RenderError(f"{type(denoiser).__name__} has no speed levers; turn sampler.compile, fuse_qkv and "
                          "channels_last off")
    found = shapes(setup.plan)
    size = batch_size(denoiser, setup, sampler.max_batch, batching.demand(setup.plan, images), found, measured, key)
    setup = replace(setup, max_batch=size, pad_batches=chosen.compile is not None)
    network_key = (*key, chosen, getattr(denoiser, "ip_adapter", None))  # an IP-Adapter adds inputs and processors
    timings = {"compile": warm_up(denoiser, setup, found, measured, network_key) if chosen.compile else 0.0}
    start = time.perf_counter()
    per_item = item_flops(denoiser, setup, found, measured, key)
    peak = flops.peak(device, getattr(denoiser, "dtype", torch.float32), peak_tflops)
    timings["flops"] = time.perf_counter() - start
    network = {
        "max_batch": sampler.max_batch,
        "batch": size,
        "compile": chosen.compile,
        "cuda_graphs": bool(getattr(denoiser, "cuda_graphs", False)),
        "fuse_qkv": chosen.fuse_qkv,
        "channels_last": chosen.channels_last,
    }
    return setup, timings, {"network": network, "item_flops": per_item, "peak": peak}


def batch_size(denoiser: Denoiser, setup: FusionSetup, setting: int | str, need: int,
               found: dict[tuple[int, int], Pair], measured: Measured, key: tuple) -> int:
    """`sampler.max_batch`, never above what a step needs; `auto` probes the largest window once per model."""
    if not found:  # no region reaches a latent pixel at any step: no network call to size
        return 1
    if setting != "auto":
        return min(setting, need)
    shape, pair = next(iter(found.items()))
    probe_key = (*key, shape)

    def item_bytes() -> int:
        if probe_key not in measured.item_bytes:
            with _eager(denoiser):
                probe = functools.partial(call, denoiser, setup, pair)
                measured.item_bytes[probe_key] = batching.peak_bytes_per_item(setup.masks.device, probe)
        return measured.item_bytes[probe_key]

    return batching.auto_max_batch(setup.masks.device, need, item_bytes)


def item_flops(denoiser: Denoiser, setup: FusionSetup, found: dict[tuple[int, int], Pair], measured: Measured,
               key: tuple) -> dict[tuple[int, int], int]:
    """FLOPs of one item per window shape (with its guidance branch), counted once per model."""
    counts = {}
    for shape, pair in found.items():
        count_key = (*key, shape)
        if count_key not in measured.item_flops:
            with _eager(denoiser):
                measured.item_flops[count_key] = flops.count(functools.partial(call, denoiser, setup, pair, 1))
        counts[shape] = measured.item_flops[count_key]
    return counts


def warm_up(denoiser: Denoiser, setup: FusionSetup, found: dict[tuple[int, int], Pair], measured: Measured,
            key: tuple) -> float:
    """Seconds spent compiling (and capturing CUDA graphs for) every window shape at the render's batch size."""
    todo = {(*key, (h, w), setup.max_batch, v): pair for (h, w, v), pair in variant_shapes(setup).items()}
    todo = {warm: pair for warm, pair in todo.items() if warm not in measured.warm}
    if not todo:
        return 0.0
    start = time.perf_counter()
    for warm, pair in todo.items():
        for _ in range(3 if getattr(denoiser, "cuda_graphs", False) else 1):  # warm-up run, capture, replay
            call(denoiser, setup, pair, setup.max_batch)
        measured.warm.add(warm)
    if setup.masks.is_cuda:
        torch.cuda.synchronize(setup.masks.device)
    return time.perf_counter() - start


def call(denoiser: Denoiser, setup: FusionSetup, pair: Pair, batch: int) -> torch.Tensor:
    """One network call on `batch` copies of `pair` at step 0, on noise from a private generator."""
    window, channels = pair.window, setup.white.shape[1]
    noise = torch.randn(batch, channels, window.height, window.width, generator=torch.Generator().manual_seed(0))
    return denoiser.predict_x0(noise.to(setup.masks.device), setup.table, 0, conditioning(setup, [pair] * batch))


def _eager(denoiser: Denoiser) -> contextlib.AbstractContextManager:
    eager = getattr(denoiser, "eager", None)
    return eager() if eager is not None else contextlib.nullcontext()
