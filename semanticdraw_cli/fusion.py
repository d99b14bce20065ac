"""The SemanticDraw fusion sampler and the classic MultiDiffusion baseline (architecture.md §4).

The sampler never imports diffusers: it drives a narrow `Denoiser` (x0 prediction for a batch of
windows) with explicit step tables, so it can be tested with a fake model. The canvas latent is kept
in variance-preserving form, x_i = a_i·x0 + s_i·eps, for every family.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from semanticdraw_cli import control
from semanticdraw_cli.batching import Batching, Item, chunks, padding
from semanticdraw_cli.families.base import Conditioning, Denoiser, Embeddings
from semanticdraw_cli.plan import Pair
from semanticdraw_cli.region_sampling import RegionNoise
from semanticdraw_cli.schedule import StepTable, draw, renoise
from semanticdraw_cli.tiles import Window, window_index


@dataclass(frozen=True)
class FusionSetup:
    """Everything fixed for one render. Per-step masks include the background prompt as region 0."""

    table: StepTable
    masks: torch.Tensor  # (n, R, h, w) quantized masks, on the compute device
    plan: tuple[tuple[Pair, ...], ...]  # pairs per step
    weights: tuple[tuple[torch.Tensor, ...], ...]  # tile weight per pair, (wh, ww)
    cond: Embeddings  # (R, ...) per region
    uncond: Embeddings | None  # (R, ...) per region; None when guidance is off
    guidance: torch.Tensor  # (R,) float32 guidance scale per region, on the compute device
    fill: torch.Tensor  # (N or 1, C, h or 1, w or 1) x0 where no region contributes
    white: torch.Tensor  # (1, C, 1, 1) latent of a white image
    base: torch.Tensor | None  # (N or 1, C, h, w) background image latent, painted over
    bootstrap_steps: int
    bootstrap_mix: float
    leak_sensitivity: float
    max_batch: int  # items per network call (out of memory halves it during a run)
    pairs_total: int  # every region on every grid window, for the report
    method: str = "semanticdraw"  # or "multidiffusion": average after each pair's full step
    # Per step, where x0 leans towards the fill by the weight leak suppression took away: True everywhere (a
    # picture painted over), False nowhere, or a (1, h, w) bool tensor (masks.uncovered); None: everywhere
    pull_to_fill: tuple[torch.Tensor | bool, ...] | None = None
    pad_batches: bool = False  # pad every call to max_batch items: one static shape for a compiled network
    variants: tuple[Hashable, ...] = ()  # the network variant per region (never mixed in a call); (): all the same
    region_noise: RegionNoise | None = None  # regions with their own seed: their bootstrap noise (region_sampling)
    controls: control.ControlSetup | None = None  # ControlNet entries and the regions that use them; None: none


@dataclass(frozen=True)
class StepStats:
    step: int
    network_calls: int
    batch_items: int
    latent_pixels: int
    pairs_active: int
    pairs_total: int
    oom_halvings: int = 0  # calls that ran out of memory and were retried with half the batch
    padded_items: int = 0  # padding items evaluated and discarded (static shapes)
    max_batch: int = 0  # the batch size in use at the end of the step


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


def at(window: Window, canvas: torch.Tensor) -> tuple:
    """Index of a window into the last two dims of `canvas`: its slices, or the modulo indices of a window
    that crosses the edge of a wrapped canvas, as tensors on the canvas's device (`t[..., rows, cols]`)."""
    index = window_index(window, *canvas.shape[-2:])
    if isinstance(index[0], slice):
        return index
    return _wrapped_index(window, *canvas.shape[-2:], canvas.device)


@functools.lru_cache(maxsize=4096)
def _wrapped_index(window: Window, height: int, width: int, device: torch.device) -> tuple:
    """A crossing window's modulo indices on the device, copied there once (no copy inside the step loop)."""
    return tuple(torch.from_numpy(i).to(device) for i in window_index(window, height, width))


def gather(embeddings: Embeddings | None, regions: list[int]) -> Embeddings | None:
    """Each item's rows of (R, ...) embeddings: views stacked on the device (an index list would be a host sync)."""
    if embeddings is None:
        return None
    return {key: torch.stack([value[r] for r in regions]) for key, value in embeddings.items()}


def variant(setup: FusionSetup, region: int) -> Hashable:
    """The network variant a region's items need; None: the network as loaded."""
    return setup.variants[region] if setup.variants else None


def conditioning(setup: FusionSetup, pairs: Sequence[Pair], step: int = 0,
                 shifts: Sequence[tuple[int, int]] = ()) -> Conditioning:
    """What one call receives for these pairs (all of one variant and one set of ControlNets at `step`): each
    item's region's rows, and its control crops rolled by its bootstrap `shifts`."""
    regions = [p.region for p in pairs]
    return Conditioning(
        cond=gather(setup.cond, regions),
        uncond=gather(setup.uncond, regions),
        guidance=torch.stack([setup.guidance[r] for r in regions]),
        windows=[p.window for p in pairs],
        variant=variant(setup, regions[0]),
        controls=control.inputs(setup.controls, step, pairs, shifts),
    )


@dataclass
class _Run:
    """What one sampling run carries between steps: its generators, batch size and the centring shifts."""

    generators: Sequence[torch.Generator]
    batching: Batching
    shifts: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)  # (step, pair) -> roll


def sample(
    denoiser: Denoiser, setup: FusionSetup, x: torch.Tensor, generators: Sequence[torch.Generator]
) -> Iterator[tuple[StepStats, torch.Tensor, torch.Tensor]]:
    """Run every step, yielding (stats, canvas latent, fused x0) after each; the last latent is the clean x0.

    Nothing in the loop waits for the device: callers that time steps record CUDA events (render.py).
    """
    step_fn = _multidiffusion_step if setup.method == "multidiffusion" else _fusion_step
    run = _Run(generators, Batching(setup.max_batch, setup.pad_batches), _centring_shifts(setup))
    for i in range(setup.table.steps):
        x, x0, stats = step_fn(denoiser, setup, x, i, run)
        yield stats, x, x0


def _centring_shifts(setup: FusionSetup) -> dict[tuple[int, int], tuple[int, int]]:
    """The bootstrap steps' centring rolls per pair, from one copy of their masks to the host."""
    if setup.method != "semanticdraw" or setup.bootstrap_steps == 0:
        return {}
    steps = min(setup.bootstrap_steps, setup.table.steps)
    masks = setup.masks[:steps].cpu() > 0  # (steps, R, h, w)
    return {
        (i, j): centring_shift(masks[i, pair.region][at(pair.window, masks)])
        for i in range(steps)
        for j, pair in enumerate(setup.plan[i])
    }


def _predict(
    denoiser: Denoiser, setup: FusionSetup, step: int, inputs: list[torch.Tensor], pairs: list[Pair], run: _Run,
    shifts: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """x0 of the items in calls of at most the batch size; a call that runs out of memory is retried in halves."""
    batching, outputs, start = run.batching, [], 0
    while start < len(inputs):
        end = min(start + batching.size, len(inputs))
        try:
            out = _call(denoiser, setup, step, inputs[start:end], pairs[start:end], batching,
                        shifts[start:end] if shifts else [])
        except torch.cuda.OutOfMemoryError:
            if end - start == 1:
                raise
            out = None
        if out is None:  # outside the handler, so that the failed call's tensors are freed first
            batching.halve(end - start)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        outputs.append(out)
        start = end
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def _call(denoiser: Denoiser, setup: FusionSetup, step: int, inputs: list[torch.Tensor], pairs: list[Pair],
          batching: Batching, shifts: list[tuple[int, int]]) -> torch.Tensor:
    """One network call; padded with copies of the last item to the batch size when shapes must stay static."""
    count, extra = len(inputs), padding(len(inputs), batching)
    inputs, pairs, shifts = inputs + inputs[-1:] * extra, pairs + pairs[-1:] * extra, shifts + shifts[-1:] * extra
    batching.padded, batching.calls = batching.padded + extra, batching.calls + 1
    x0 = denoiser.predict_x0(torch.stack(inputs), setup.table, step, conditioning(setup, pairs, step, shifts))
    return x0[:count] if extra else x0


def _stats(
    setup: FusionSetup, step: int, items: int, pixels: int, images: int, run: _Run, before: Batching
) -> StepStats:
    doubled, b = (2 if setup.uncond is not None else 1), run.batching
    return StepStats(step, b.calls - before.calls, items * doubled, pixels * doubled, len(setup.plan[step]) * images,
                     setup.pairs_total * images, b.halvings - before.halvings, b.padded - before.padded, b.size)


def _fusion_step(
    denoiser: Denoiser, setup: FusionSetup, x: torch.Tensor, i: int, run: _Run
) -> tuple[torch.Tensor, torch.Tensor, StepStats]:
    """One SemanticDraw step: x0 per pair, masked average of x0 (latent pre-averaging), re-noise once.

    arXiv 2403.09055 §3.2: x0 = Σ_r W_r ⊙ x0_r / Σ_r W_r over every (window, region) pair, W_r the quantized
    mask times the tile weight (Step 1, latent pre-averaging; Step 3, quantized masks). In the first
    bootstrap steps (Step 2, mask-centering bootstrapping) each region's input is x_r = M_r ⊙ x + (1 − M_r) ⊙ bg,
    bg = a_i·(μ·white + (1 − μ)·base) + s_i·eps, rolled so that its mask's bounding box is centred, and
    rolled back after the call.

    Latent pre-averaging: x0 = num/den. Where bootstrapping's leak suppression leaves den < 1, the result
    is pulled towards the fill by the weight it lacks (`pull_to_fill`): everywhere when painting over a
    picture, else only at pixels that no mask covers at this step; where the masks add up to 1 (everywhere
    with a background prompt) the authors' code normalises by den and fills only where den = 0.
    """
    table, images = setup.table, len(x)
    a, s = table.signal[i], table.noise[i]
    masks = setup.masks[i]  # (R, h, w)
    bootstrapping = i < setup.bootstrap_steps
    if bootstrapping:
        mix = min(max(setup.bootstrap_mix - i, 0.0), 1.0)
        base = setup.base if setup.base is not None else x
        eps = draw(run.generators, tuple(x.shape[1:]), x.device)
        if setup.region_noise is not None:
            eps = setup.region_noise.compose(eps, i)
        # noised_i(m·white + (1 − m)·base); with no background image, base is the canvas latent itself
        bg = a * (mix * setup.white + (1.0 - mix) * base) + s * eps  # (N, C, h, w)
    num = torch.zeros_like(x)  # (N, C, h, w)
    den = torch.zeros_like(x[:, :1])  # (N, 1, h, w)
    items: list[Item] = [(k, j) for k in range(images) for j in range(len(setup.plan[i]))]
    count = pixels = 0
    before = replace(run.batching)
    for chunk in chunks(items, setup.plan[i], run.batching.size, setup.variants, control.call_key(setup.controls, i)):
        pairs = [setup.plan[i][j] for _, j in chunk]
        inputs, shifts = [], []
        for (k, j), pair in zip(chunk, pairs):
            rows, cols = at(pair.window, x)
            x_rv = x[k][:, rows, cols]
            if bootstrapping:
                m = masks[pair.region][rows, cols]
                x_rv = m * x_rv + (1.0 - m) * bg[k][:, rows, cols]
                shift = run.shifts[i, j]
                x_rv = torch.roll(x_rv, shift, dims=(-2, -1))
                shifts.append(shift)
            inputs.append(x_rv)
        x0 = _predict(denoiser, setup, i, inputs, pairs, run, shifts).float()
        count += len(pairs)
        pixels += sum(p.window.height * p.window.width for p in pairs)
        for n, ((k, j), pair) in enumerate(zip(chunk, pairs)):
            rows, cols = at(pair.window, x)
            w = masks[pair.region][rows, cols][None]  # (1, wh, ww)
            x0_rv = x0[n]
            if bootstrapping:
                x0_rv = torch.roll(x0_rv, (-shifts[n][0], -shifts[n][1]), dims=(-2, -1))
                leak = (x0_rv - bg[k][:, rows, cols]).pow(2).mean(dim=0, keepdim=True)
                w = w * (2.0 * torch.sigmoid(leak / setup.leak_sensitivity) - 1.0)
            w = w * setup.weights[i][j]
            num[k][:, rows, cols] += w * x0_rv
            den[k][:, rows, cols] += w
    x0 = torch.where(den > 0, num / den.clamp_min(1e-12), setup.fill)  # (N, C, h, w)
    pull = True if setup.pull_to_fill is None else setup.pull_to_fill[i]
    if pull is not False:
        covered = den.clamp(0.0, 1.0)
        pulled = covered * x0 + (1.0 - covered) * setup.fill
        x0 = pulled if pull is True else torch.where(pull, pulled, x0)
    return renoise(x, x0, i, run.generators, table), x0, _stats(setup, i, count, pixels, images, run, before)


def _multidiffusion_step(
    denoiser: Denoiser, setup: FusionSetup, x: torch.Tensor, i: int, run: _Run
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
        fresh = [[torch.randn(shape, generator=g) for shape in shapes] for g in run.generators]
    num, x0_num = torch.zeros_like(x), torch.zeros_like(x)
    den = torch.zeros_like(x[:, :1])
    items: list[Item] = [(k, j) for k in range(images) for j in range(pair_count)]
    count = pixels = 0
    before = replace(run.batching)
    for chunk in chunks(items, setup.plan[i], run.batching.size, setup.variants, control.call_key(setup.controls, i)):
        pairs = [setup.plan[i][j] for _, j in chunk]
        inputs = [x[k][(slice(None), *at(p.window, x))] for (k, _), p in zip(chunk, pairs)]
        x0 = _predict(denoiser, setup, i, inputs, pairs, run).float()
        count += len(pairs)
        pixels += sum(p.window.height * p.window.width for p in pairs)
        for n, ((k, j), pair) in enumerate(zip(chunk, pairs)):
            rows, cols = at(pair.window, x)
            if table.stochastic and last:
                stepped = x0[n]
            elif table.stochastic:
                stepped = table.signal[i + 1] * x0[n] + table.noise[i + 1] * fresh[k][j].to(x.device)
            else:
                eps = (inputs[n] - table.signal[i] * x0[n]) / table.noise[i]
                stepped = table.signal[i + 1] * x0[n] + table.noise[i + 1] * eps
            w = masks[pair.region][rows, cols][None] * setup.weights[i][j]
            num[k][:, rows, cols] += w * stepped
            x0_num[k][:, rows, cols] += w * x0[n]
            den[k][:, rows, cols] += w
    fill = setup.fill.expand_as(x)  # uncovered pixels follow the fill deterministically
    passthrough = table.signal[i + 1] * fill + table.noise[i + 1] * (x - table.signal[i] * fill) / table.noise[i]
    x0 = torch.where(den > 0, x0_num / den.clamp_min(1e-12), fill)  # the mean prediction, for previews
    x = torch.where(den > 0, num / den.clamp_min(1e-12), passthrough)
    return x, x0, _stats(setup, i, count, pixels, images, run, before)
