"""The SemanticDraw fusion sampler and the classic MultiDiffusion baseline (architecture.md §4).

The sampler never imports diffusers: it drives a narrow `Denoiser` (x0 prediction for a batch of
windows) with explicit step tables, so it can be tested with a fake model. The canvas latent is kept
in variance-preserving form, x_i = a_i·x0 + s_i·eps, for every family.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from semanticdraw_cli.plan import Pair
from semanticdraw_cli.schedule import StepTable, draw, renoise
from semanticdraw_cli.tiles import Window

Embeddings = dict[str, torch.Tensor]  # batch-first tensors; the sampler only indexes and lerps them


class Denoiser(Protocol):
    """What the sampler needs of a model: an x0 estimate for a batch of windows at step i."""

    def predict_x0(
        self,
        x: torch.Tensor,  # (B, C, h, w) noisy latents at step `step`
        table: StepTable,
        step: int,
        cond: Embeddings,  # (B, ...) per item
        uncond: Embeddings | None,  # (B, ...); None: no unconditional branch
        guidance: float,
        windows: Sequence[Window],  # where each item lies on the canvas (size conditioning)
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class FusionSetup:
    """Everything fixed for one render. Per-step masks include the background prompt as region 0."""

    table: StepTable
    masks: torch.Tensor  # (n, R, h, w) quantized masks, on the compute device
    plan: tuple[tuple[Pair, ...], ...]  # pairs per step
    weights: tuple[tuple[torch.Tensor, ...], ...]  # tile weight per pair, (wh, ww)
    cond: Embeddings  # (R, ...) per region
    uncond: Embeddings | None  # (R, ...) per region; None when guidance is off
    guidance: float
    fill: torch.Tensor  # (N or 1, C, h or 1, w or 1) x0 where no region contributes
    white: torch.Tensor  # (1, C, 1, 1) latent of a white image
    base: torch.Tensor | None  # (N or 1, C, h, w) background image latent, painted over
    bootstrap_steps: int
    bootstrap_mix: float
    leak_sensitivity: float
    max_batch: int
    pairs_total: int  # every region on every grid window, for the report
    method: str = "semanticdraw"  # or "multidiffusion": average after each pair's full step
    fill_uncovered_only: bool = False  # True: x0 = num/den wherever den > 0 (a background prompt, no picture)


@dataclass(frozen=True)
class StepStats:
    step: int
    unet_calls: int
    batch_items: int
    latent_pixels: int
    pairs_active: int
    pairs_total: int


def centring_shift(mask: torch.Tensor) -> tuple[int, int]:
    """Roll (dy, dx) that moves the centre of the mask's bounding box to the window centre."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        return 0, 0
    height, width = mask.shape
    dy = height // 2 - (int(rows[0]) + int(rows[-1]) + 1) // 2
    dx = width // 2 - (int(cols[0]) + int(cols[-1]) + 1) // 2
    return dy, dx


def gather(embeddings: Embeddings | None, regions: list[int]) -> Embeddings | None:
    if embeddings is None:
        return None
    return {key: value[regions] for key, value in embeddings.items()}


def sample(
    denoiser: Denoiser, setup: FusionSetup, x: torch.Tensor, generators: Sequence[torch.Generator]
) -> Iterator[tuple[StepStats, torch.Tensor, torch.Tensor]]:
    """Run every step, yielding (stats, canvas latent, fused x0) after each; the last latent is the clean x0."""
    step_fn = _multidiffusion_step if setup.method == "multidiffusion" else _fusion_step
    for i in range(setup.table.steps):
        x, x0, stats = step_fn(denoiser, setup, x, i, generators)
        if x.is_cuda:
            torch.cuda.synchronize()
        yield stats, x, x0


def _chunks(pairs: Sequence[tuple[int, int]], setup: FusionSetup, step: int) -> Iterator[list[tuple[int, int]]]:
    """Items (image, pair index) in batches of at most max_batch, one window shape per batch."""
    by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for item in pairs:
        window = setup.plan[step][item[1]].window
        by_shape.setdefault((window.height, window.width), []).append(item)
    for items in by_shape.values():
        for start in range(0, len(items), setup.max_batch):
            yield items[start : start + setup.max_batch]


def _predict(
    denoiser: Denoiser, setup: FusionSetup, step: int, inputs: list[torch.Tensor], pairs: list[Pair]
) -> torch.Tensor:
    regions = [p.region for p in pairs]
    return denoiser.predict_x0(
        torch.stack(inputs),
        setup.table,
        step,
        gather(setup.cond, regions),
        gather(setup.uncond, regions),
        setup.guidance,
        [p.window for p in pairs],
    )


def _stats(setup: FusionSetup, step: int, calls: int, items: int, pixels: int, images: int) -> StepStats:
    doubled = 2 if setup.uncond is not None else 1
    return StepStats(step, calls, items * doubled, pixels * doubled, len(setup.plan[step]) * images, setup.pairs_total * images)


def _fusion_step(
    denoiser: Denoiser, setup: FusionSetup, x: torch.Tensor, i: int, generators: Sequence[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor, StepStats]:
    """One SemanticDraw step: x0 per pair, masked average of x0 (latent pre-averaging), re-noise once.

    Latent pre-averaging: x0 = num/den. Where bootstrapping's leak suppression leaves den < 1, the result
    is pulled towards the fill (white, or the picture painted over), unless `fill_uncovered_only`: with a
    background prompt and no picture the authors' code normalises by den and fills only where den = 0.
    """
    table, images = setup.table, len(x)
    a, s = table.signal[i], table.noise[i]
    masks = setup.masks[i]  # (R, h, w)
    bootstrapping = i < setup.bootstrap_steps
    if bootstrapping:
        mix = min(max(setup.bootstrap_mix - i, 0.0), 1.0)
        base = setup.base if setup.base is not None else x
        eps = draw(generators, tuple(x.shape[1:]), x.device)
        # noised_i(m·white + (1 − m)·base); with no background image, base is the canvas latent itself
        bg = a * (mix * setup.white + (1.0 - mix) * base) + s * eps  # (N, C, h, w)
    num = torch.zeros_like(x)  # (N, C, h, w)
    den = torch.zeros_like(x[:, :1])  # (N, 1, h, w)
    items = [(k, j) for k in range(images) for j in range(len(setup.plan[i]))]
    calls = count = pixels = 0
    for chunk in _chunks(items, setup, i):
        pairs = [setup.plan[i][j] for _, j in chunk]
        inputs, shifts = [], []
        for (k, _), pair in zip(chunk, pairs):
            rows, cols = pair.window.slices
            x_rv = x[k, :, rows, cols]
            if bootstrapping:
                m = masks[pair.region, rows, cols]
                x_rv = m * x_rv + (1.0 - m) * bg[k, :, rows, cols]
                shift = centring_shift(m > 0)
                x_rv = torch.roll(x_rv, shift, dims=(-2, -1))
                shifts.append(shift)
            inputs.append(x_rv)
        x0 = _predict(denoiser, setup, i, inputs, pairs).float()
        calls, count = calls + 1, count + len(pairs)
        pixels += sum(p.window.height * p.window.width for p in pairs)
        for n, ((k, j), pair) in enumerate(zip(chunk, pairs)):
            rows, cols = pair.window.slices
            w = masks[pair.region, rows, cols][None]  # (1, wh, ww)
            x0_rv = x0[n]
            if bootstrapping:
                x0_rv = torch.roll(x0_rv, (-shifts[n][0], -shifts[n][1]), dims=(-2, -1))
                leak = (x0_rv - bg[k, :, rows, cols]).pow(2).mean(dim=0, keepdim=True)
                w = w * (2.0 * torch.sigmoid(leak / setup.leak_sensitivity) - 1.0)
            w = w * setup.weights[i][j]
            num[k, :, rows, cols] += w * x0_rv
            den[k, :, rows, cols] += w
    x0 = torch.where(den > 0, num / den.clamp_min(1e-12), setup.fill)  # (N, C, h, w)
    if not setup.fill_uncovered_only:
        covered = den.clamp(0.0, 1.0)
        x0 = covered * x0 + (1.0 - covered) * setup.fill
    return renoise(x, x0, i, generators, table), x0, _stats(setup, i, calls, count, pixels, images)


def _multidiffusion_step(
    denoiser: Denoiser, setup: FusionSetup, x: torch.Tensor, i: int, generators: Sequence[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor, StepStats]:
    """Classic MultiDiffusion: each pair takes its own full scheduler step, then the results are averaged.

    With a stochastic sampler every pair draws its own noise, so averaging collapses the variance:
    the blurry, gray "MD + LCM" of the paper. Kept as the reference baseline.
    """
    table, images = setup.table, len(x)
    last = i == table.steps - 1
    masks = setup.masks[i]
    pair_count = len(setup.plan[i])
    fresh = None
    if table.stochastic and not last:
        shapes = [(x.shape[1], p.window.height, p.window.width) for p in setup.plan[i]]
        fresh = [[torch.randn(shape, generator=g) for shape in shapes] for g in generators]
    num, x0_num = torch.zeros_like(x), torch.zeros_like(x)
    den = torch.zeros_like(x[:, :1])
    items = [(k, j) for k in range(images) for j in range(pair_count)]
    calls = count = pixels = 0
    for chunk in _chunks(items, setup, i):
        pairs = [setup.plan[i][j] for _, j in chunk]
        inputs = [x[k, :, p.window.slices[0], p.window.slices[1]] for (k, _), p in zip(chunk, pairs)]
        x0 = _predict(denoiser, setup, i, inputs, pairs).float()
        calls, count = calls + 1, count + len(pairs)
        pixels += sum(p.window.height * p.window.width for p in pairs)
        for n, ((k, j), pair) in enumerate(zip(chunk, pairs)):
            rows, cols = pair.window.slices
            if table.stochastic and last:
                stepped = x0[n]
            elif table.stochastic:
                stepped = table.signal[i + 1] * x0[n] + table.noise[i + 1] * fresh[k][j].to(x.device)
            else:
                eps = (inputs[n] - table.signal[i] * x0[n]) / table.noise[i]
                stepped = table.signal[i + 1] * x0[n] + table.noise[i + 1] * eps
            w = masks[pair.region, rows, cols][None] * setup.weights[i][j]
            num[k, :, rows, cols] += w * stepped
            x0_num[k, :, rows, cols] += w * x0[n]
            den[k, :, rows, cols] += w
    fill = setup.fill.expand_as(x)  # uncovered pixels follow the fill deterministically
    passthrough = table.signal[i + 1] * fill + table.noise[i + 1] * (x - table.signal[i] * fill) / table.noise[i]
    x0 = torch.where(den > 0, x0_num / den.clamp_min(1e-12), fill)  # the mean prediction, for previews
    x = torch.where(den > 0, num / den.clamp_min(1e-12), passthrough)
    return x, x0, _stats(setup, i, calls, count, pixels, images)
