"""The SemanticDraw fusion sampler and the classic MultiDiffusion baseline (architecture.md §4).

The sampler never imports diffusers: it drives a narrow `Denoiser` (x0 prediction for a batch of
windows) with explicit step tables, so it can be tested with a fake model. The canvas latent is kept
in variance-preserving form, x_i = a_i·x0 + s_i·eps, for every family.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from semanticdraw_cli import control, step_index, window_views
from semanticdraw_cli.batching import Batching, padding
from semanticdraw_cli.families.base import Conditioning, ControlInput, Denoiser, Embeddings
from semanticdraw_cli.plan import Pair
from semanticdraw_cli.region_sampling import RegionNoise
from semanticdraw_cli.schedule import StepTable, draw, renoise
from semanticdraw_cli.step_index import Group


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
    index: step_index.StepIndex | None = None  # the step loop's gather/scatter indices (build_index); None: built
    # Gather and scatter each group of a step whole (True: fewest operations, for a GPU) or each network call's
    # share of it (False: tensors that stay in the processor's cache, for a CPU, whose host does the arithmetic)
    whole_groups: bool = True


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


def gather(embeddings: Embeddings | None, regions: torch.Tensor) -> Embeddings | None:
    """Each item's rows of (R, ...) embeddings; `regions` (B,) long on the embeddings' device."""
    if embeddings is None:
        return None
    return {key: value.index_select(0, regions) for key, value in embeddings.items()}


def variant(setup: FusionSetup, region: int) -> Hashable:
    """The network variant a region's items need; None: the network as loaded."""
    return setup.variants[region] if setup.variants else None


def conditioning(setup: FusionSetup, pairs: Sequence[Pair], step: int = 0, shifts: Sequence[tuple[int, int]] = (),
                 regions: torch.Tensor | None = None,
                 lines: step_index.Lines | None = None) -> Conditioning:
    """What one call receives for these pairs (all of one variant and one set of ControlNets at `step`): each
    item's region's rows, and its control crops rolled by its bootstrap `shifts`. `regions` and `lines`: the pairs'
    region rows and window rows and columns, rolled (`step_index.Group`), as tensors on the device (the step loop
    has them in its index); None: made from `pairs` and `shifts`."""
    if regions is None:
        regions = torch.tensor([p.region for p in pairs], device=setup.guidance.device)
    return Conditioning(
        cond=gather(setup.cond, regions),
        uncond=gather(setup.uncond, regions),
        guidance=setup.guidance.index_select(0, regions),
        windows=[p.window for p in pairs],
        variant=variant(setup, pairs[0].region),
        controls=_controls(setup, pairs, step, shifts, regions, lines),
    )


def _controls(setup: FusionSetup, pairs: Sequence[Pair], step: int, shifts: Sequence[tuple[int, int]],
              regions: torch.Tensor, lines: step_index.Lines | None) -> tuple[ControlInput, ...]:
    """The call's `ControlInput`s (none without ControlNets); `lines` made from the pairs when not given."""
    if setup.controls is None:
        return ()
    if lines is None:
        windows = [p.window for p in pairs]
        lines = step_index.lines_of(windows, shifts, *setup.masks.shape[-2:], regions.device)
    return control.inputs(setup.controls, step, pairs[0].region, regions, lines)


def _bootstrap_steps(setup: FusionSetup) -> int:
    """The steps whose inputs are bootstrapped (classic MultiDiffusion has none)."""
    return setup.bootstrap_steps if setup.method == "semanticdraw" else 0


def build_index(setup: FusionSetup, images: int) -> step_index.StepIndex:
    """The step loop's gather/scatter indices for `images` images, grouped as the batcher groups calls."""
    return step_index.build(setup.plan, setup.masks, setup.weights, images, _bootstrap_steps(setup),
                            lambda i: (setup.variants, control.call_key(setup.controls, i)))


class _Scratch:
    """Tensors a sampling run reuses from step to step, so that a step allocates no group-sized tensor: on the
    CPU a fresh large tensor is fresh pages, and touching them the first time costs more than the arithmetic."""

    def __init__(self) -> None:
        self.flat: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
        count = math.prod(shape)
        buffer = self.flat.get(name)
        if buffer is None or buffer.numel() < count or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self.flat[name] = torch.empty(count, dtype=like.dtype, device=like.device)
        return buffer[:count].view(*shape)


@dataclass
class _Run:
    """What one sampling run carries between steps: its generators, batch size and gather/scatter indices."""

    generators: Sequence[torch.Generator]
    batching: Batching
    index: step_index.StepIndex
    scratch: _Scratch = field(default_factory=_Scratch)


def sample(
    denoiser: Denoiser, setup: FusionSetup, x: torch.Tensor, generators: Sequence[torch.Generator]
) -> Iterator[tuple[StepStats, torch.Tensor, torch.Tensor]]:
    """Run every step, yielding (stats, canvas latent, fused x0) after each; the last latent is the clean x0.

    Nothing in the loop waits for the device: callers that time steps record CUDA events (render.py).
    """
    step_fn = _multidiffusion_step if setup.method == "multidiffusion" else _fusion_step
    index = setup.index
    if index is None or not index.fits(setup.plan, setup.masks, len(x), _bootstrap_steps(setup)):
        index = build_index(setup, len(x))
    run = _Run(generators, Batching(setup.max_batch, setup.pad_batches), index)
    for i in range(setup.table.steps):
        x, x0, stats = step_fn(denoiser, setup, x, i, run)
        yield stats, x, x0


def _parts(steps: Sequence[Group], size: int, whole: bool, width: int) -> Iterator[tuple[Group, int | None]]:
    """What the step gathers and scatters at once: each whole group (one gather and one scatter whatever its
    calls), or each call's share of it at the batch size the step began with (`FusionSetup.whole_groups`); then
    the canvas width where that share's windows lie inside the canvas: on a CPU, where an operation costs little
    and a window's rows are contiguous, copying views of them beats indexing each pixel (`window_views`)."""
    for group in steps:
        block = len(group.items) if whole else size
        for start in range(0, len(group.items), block):
            part = group.part(start, min(start + block, len(group.items)))
            yield part, (width if not whole and part.plain else None)


def _predict(denoiser: Denoiser, setup: FusionSetup, step: int, inputs: torch.Tensor, part: Group,
             run: _Run) -> torch.Tensor:
    """x0 of a part's items (B, C, h, w) in calls of the batch size; a call that runs out of memory is retried
    in halves (and the smaller size kept for the rest of the run)."""
    outputs, start = [], 0
    while start < len(part.items):
        end = min(start + run.batching.size, len(part.items))
        try:
            out = _call(denoiser, setup, step, inputs[start:end], part, slice(start, end), run.batching)
        except torch.cuda.OutOfMemoryError:
            if end - start == 1:
                raise
            out = None
        if out is None:  # outside the handler, so that the failed call's tensors are freed first
            run.batching.halve(end - start)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        outputs.append(out)
        start = end
    if len(outputs) == 1:
        return outputs[0]
    return torch.cat(outputs, out=run.scratch("x0", (len(part.items), *outputs[0].shape[1:]), outputs[0]))


def _call(denoiser: Denoiser, setup: FusionSetup, step: int, inputs: torch.Tensor, group: Group, part: slice,
          batching: Batching) -> torch.Tensor:
    """One network call; padded with copies of the last item to the batch size when shapes must stay static."""
    count, extra = len(inputs), padding(len(inputs), batching)
    pairs, regions = list(group.pairs[part]), group.regions[part]
    lines = group.lines.part(part) if setup.controls is not None else None
    if extra:
        inputs = torch.cat([inputs, inputs[-1:].expand(extra, *inputs.shape[1:])])
        pairs = pairs + pairs[-1:] * extra
        regions = torch.cat([regions, regions[-1:].expand(extra)])
        if lines is not None:
            lines = lines.padded(extra)
    batching.padded, batching.calls = batching.padded + extra, batching.calls + 1
    x0 = denoiser.predict_x0(inputs, setup.table, step, conditioning(setup, pairs, step, (), regions, lines))
    return x0[:count] if extra else x0


def _stats(
    setup: FusionSetup, step: int, items: int, pixels: int, images: int, run: _Run, before: Batching
) -> StepStats:
    doubled, b = (2 if setup.uncond is not None else 1), run.batching
    return StepStats(step, b.calls - before.calls, items * doubled, pixels * doubled, len(setup.plan[step]) * images,
                     setup.pairs_total * images, b.halvings - before.halvings, b.padded - before.padded, b.size)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (C, N·H·W): the layout the step gathers windows from and scatters them into."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _canvas(flat: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """(C or 1, N·H·W) -> (N, C or 1, H, W)."""
    return flat.view(flat.shape[0], shape[0], *shape[2:]).transpose(0, 1)


def _gather(flat: torch.Tensor, group: Group, scratch: _Scratch, name: str, width: int | None = None) -> torch.Tensor:
    """(G, C, h, w) contiguous: each item's window of the (C, N·H·W) canvas, rolled as its index says; with the
    canvas `width` (on a CPU, for a group that does not wrap) through views of the windows (`window_views`)."""
    channels, items = flat.shape[0], len(group.items)
    out = scratch(name, (items, channels, *group.shape), flat)
    if width is not None:
        return window_views.gather(flat, group.corners, group.shifts, group.shape, width, out)
    picked = torch.index_select(flat, 1, group.pixels, out=scratch("picked", (channels, group.pixels.numel()), flat))
    return out.copy_(picked.view(channels, items, *group.shape).transpose(0, 1))


def _scatter(flat: torch.Tensor, values: torch.Tensor | None, weight: torch.Tensor, group: Group,
             scratch: _Scratch, width: int | None = None) -> None:
    """Add weight · values ((G, 1, h, w) · (G, C, h, w); values None: the weight alone) into the (C, N·H·W)
    canvas at the items' pixels, item after item; with the canvas `width` (as in `_gather`) view after view."""
    if width is not None:
        product = weight if values is None else torch.mul(values, weight, out=scratch("product", values.shape, values))
        window_views.scatter(flat, product, group.corners, group.shifts, width)
        return
    if values is None:
        step_index.add_at(flat, group.pixels, weight.reshape(1, -1))
        return
    product = scratch("product", (flat.shape[0], len(group.items), *group.shape), flat)
    torch.mul(values.transpose(0, 1), weight.transpose(0, 1), out=product)
    step_index.add_at(flat, group.pixels, product.view(flat.shape[0], -1))


def _blend_background(inputs: torch.Tensor, background: torch.Tensor, group: Group, scratch: _Scratch) -> torch.Tensor:
    """M ⊙ x + (1 − M) ⊙ bg for the group's (rolled) windows, in place in the `inputs` scratch."""
    outside = torch.mul(background, group.outside, out=scratch("outside", background.shape, background))
    return inputs.mul_(group.mask).add_(outside)


def _leak_weight(x0: torch.Tensor, background: torch.Tensor, group: Group, sensitivity: float,
                 scratch: _Scratch) -> torch.Tensor:
    """Leak suppression: M · (2·sigmoid(mean_c (x0 − bg)² / sensitivity) − 1) · tile weight, (G, 1, h, w). Where
    the prediction stayed bootstrap background the weight falls to 0."""
    difference = torch.sub(x0, background, out=scratch("product", x0.shape, x0)).pow_(2)
    leak = torch.mean(difference, dim=1, keepdim=True, out=scratch("leak", group.mask.shape, x0))
    return leak.div_(sensitivity).sigmoid_().mul_(2.0).sub_(1.0).mul_(group.mask).mul_(group.tile)


def _fusion_step(
    denoiser: Denoiser, setup: FusionSetup, x: torch.Tensor, i: int, run: _Run
) -> tuple[torch.Tensor, torch.Tensor, StepStats]:
    """One SemanticDraw step: x0 per pair, masked average of x0 (latent pre-averaging), re-noise once.

    arXiv 2403.09055 §3.2: x0 = Σ_r W_r ⊙ x0_r / Σ_r W_r over every (window, region) pair, W_r the quantized
    mask times the tile weight (Step 1, latent pre-averaging; Step 3, quantized masks). In the first
    bootstrap steps (Step 2, mask-centering bootstrapping) each region's input is x_r = M_r ⊙ x + (1 − M_r) ⊙ bg,
    bg = a_i·(μ·white + (1 − μ)·base) + s_i·eps, rolled so that its mask's bounding box is centred, and
    rolled back after the call (both through the step's index: `step_index`).

    Latent pre-averaging: x0 = num/den. Where bootstrapping's leak suppression leaves den < 1, the result
    is pulled towards the fill by the weight it lacks (`pull_to_fill`): everywhere when painting over a
    picture, else only at pixels that no mask covers at this step; where the masks add up to 1 (everywhere
    with a background prompt) the authors' code normalises by den and fills only where den = 0.

    Each group of items (one window shape, variant and set of ControlNets) is gathered, masked, weighted and
    scattered back with a fixed number of batched operations, whatever its size.
    """
    table, images, scratch = setup.table, len(x), run.scratch
    a, s = table.signal[i], table.noise[i]
    bootstrapping = i < setup.bootstrap_steps
    canvas = _channels_first(x)  # (C, N·H·W)
    if bootstrapping:
        mix = min(max(setup.bootstrap_mix - i, 0.0), 1.0)
        base = setup.base if setup.base is not None else x
        eps = draw(run.generators, tuple(x.shape[1:]), x.device)
        if setup.region_noise is not None:
            eps = setup.region_noise.compose(eps, i)
        # noised_i(m·white + (1 − m)·base); with no background image, base is the canvas latent itself
        bg = _channels_first(a * (mix * setup.white + (1.0 - mix) * base) + s * eps)  # (C, N·H·W)
    num = scratch("num", canvas.shape, canvas).zero_()
    den = run.index.weight_sums[i] if not bootstrapping else scratch("den", (1, canvas.shape[1]), canvas).zero_()
    count = pixels = 0
    before = replace(run.batching)
    for group, width in _parts(run.index.steps[i], before.size, setup.whole_groups, x.shape[-1]):
        inputs = _gather(canvas, group, scratch, "inputs", width)  # (B, C, h, w)
        if bootstrapping:
            background = _gather(bg, group, scratch, "background", width)
            inputs = _blend_background(inputs, background, group, scratch)
        x0 = _predict(denoiser, setup, i, inputs, group, run).float()
        count += len(group.items)
        pixels += len(group.items) * group.shape[0] * group.shape[1]
        w = group.weight  # (G, 1, h, w): mask times tile weight
        if bootstrapping:
            w = _leak_weight(x0, background, group, setup.leak_sensitivity, scratch)
            _scatter(den, None, w, group, scratch, width)  # else the index's sum of these weights
        _scatter(num, x0, w, group, scratch, width)
    num, den = _canvas(num, x.shape), _canvas(den, x.shape)
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
    fresh = _pair_noise(setup.plan[i], x.shape[1], run.generators) if table.stochastic and not last else None
    canvas, scratch = _channels_first(x), run.scratch
    num, x0_num = scratch("num", canvas.shape, canvas).zero_(), scratch("x0 num", canvas.shape, canvas).zero_()
    den = run.index.weight_sums[i]
    count = pixels = 0
    before = replace(run.batching)
    for group, width in _parts(run.index.steps[i], before.size, setup.whole_groups, x.shape[-1]):
        inputs = _gather(canvas, group, scratch, "inputs", width)
        x0 = _predict(denoiser, setup, i, inputs, group, run).float()
        count += len(group.items)
        pixels += len(group.items) * group.shape[0] * group.shape[1]
        if table.stochastic and last:
            stepped = x0
        elif table.stochastic:
            noise = _group_noise(fresh, group, setup.plan[i]).view_as(x0).to(x.device)
            stepped = table.signal[i + 1] * x0 + table.noise[i + 1] * noise
        else:
            eps = (inputs - table.signal[i] * x0) / table.noise[i]
            stepped = table.signal[i + 1] * x0 + table.noise[i + 1] * eps
        _scatter(num, stepped, group.weight, group, scratch, width)
        _scatter(x0_num, x0, group.weight, group, scratch, width)
    num, x0_num, den = _canvas(num, x.shape), _canvas(x0_num, x.shape), _canvas(den, x.shape)
    fill = setup.fill.expand_as(x)  # uncovered pixels follow the fill deterministically
    passthrough = table.signal[i + 1] * fill + table.noise[i + 1] * (x - table.signal[i] * fill) / table.noise[i]
    x0 = torch.where(den > 0, x0_num / den.clamp_min(1e-12), fill)  # the mean prediction, for previews
    x = torch.where(den > 0, num / den.clamp_min(1e-12), passthrough)
    return x, x0, _stats(setup, i, count, pixels, images, run, before)


def _pair_noise(pairs: Sequence[Pair], channels: int, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """(N, Σ C·h·w) on the host: each image's fresh noise for every pair, drawn pair after pair from its
    generator. When every pair's share is a multiple of 16 values, one draw per generator gives the same
    numbers (the CPU generator's normal draws continue the stream in blocks of 16)."""
    sizes = [channels * p.window.height * p.window.width for p in pairs]
    if all(size % 16 == 0 for size in sizes):
        return torch.stack([torch.randn(sum(sizes), generator=g) for g in generators])
    return torch.stack([torch.cat([torch.randn(size, generator=g) for size in sizes]) for g in generators])


def _group_noise(noise: torch.Tensor, group: Group, pairs: Sequence[Pair]) -> torch.Tensor:
    """(G, C·h·w): the rows of `_pair_noise` that the group's items take (every window of a plan has one shape)."""
    return noise.view(len(noise) * len(pairs), -1).index_select(0, group.rows)
