"""Index tensors that turn a fusion step into a few batched operations (architecture.md §4.1).

Built once per render from the plan: for every step, the items (image, pair) in call order, grouped as
the batcher groups them (one window shape, network variant and set of ControlNets per group), with each
item's canvas pixels as flat indices into the canvas latent. Mask-centering bootstrapping's roll
(arXiv 2403.09055 §3.2, Step 2) is folded into the index: an item's input pixel (r, c) reads the canvas
where the un-rolled window has ((r − dy) mod h, (c − dx) mod w), so gathering the inputs rolls them and
scattering x0 back through the same index rolls it back. Wrapped canvases (`canvas.wrap`) are the same
index taken modulo the canvas size. The item's quantized mask and tile weight are gathered at those
pixels here, so the step multiplies and scatters whole groups at once. Each item's window rows and columns,
rolled and modulo the canvas the same way, let ControlNet crops be cut for a whole call at once (control.inputs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from semanticdraw_cli.batching import Item, chunks
from semanticdraw_cli.plan import Pair
from semanticdraw_cli.tiles import Window


@dataclass(frozen=True)
class Lines:
    """Items' window rows (B, h) and columns (B, w) of the latent canvas, long, each rolled with its item's latent
    and modulo the canvas: where ControlNet crops are cut (control.inputs). `runs`: every item's columns go left
    to right without a break (no column roll, no wrap across the edge), so each row of a crop is one run."""

    rows: torch.Tensor
    cols: torch.Tensor
    runs: bool

    def part(self, items: slice) -> Lines:
        """These items' lines (views)."""
        return Lines(self.rows[items], self.cols[items], self.runs)

    def padded(self, extra: int) -> Lines:
        """With `extra` copies of the last item, as a padded call has."""
        rows, cols = (torch.cat([side, side[-1:].expand(extra, -1)]) for side in (self.rows, self.cols))
        return Lines(rows, cols, self.runs)


@dataclass(frozen=True)
class Group:
    """Items of one step that may share a network call, in call order, with their gather/scatter indices."""

    items: tuple[Item, ...]  # (image, pair index in the step's plan)
    pairs: tuple[Pair, ...]  # each item's pair
    shifts: tuple[tuple[int, int], ...]  # each item's centring roll (dy, dx); (0, 0) outside bootstrapping
    shape: tuple[int, int]  # (window height, width) of every item
    pixels: torch.Tensor  # (G·h·w,) long: image·H·W + row·W + col of each item's (rolled) window pixels
    regions: torch.Tensor  # (G,) long: each item's region row, for the per-item conditioning
    rows: torch.Tensor  # (G,) long on the host: image·P + pair index (P pairs in the step), for per-pair noise
    weight: torch.Tensor  # (G, 1, h, w) float32: the item's quantized mask times its tile weight, at its pixels
    mask: torch.Tensor | None  # (G, 1, h, w) float32: the quantized mask alone (bootstrap steps; else None)
    tile: torch.Tensor | None  # (G, 1, h, w) float32: the tile weight alone (bootstrap steps; else None)
    outside: torch.Tensor | None  # (G, 1, h, w) float32: 1 − mask (bootstrap steps; else None)
    lines: Lines  # each item's (rolled) window rows and columns
    # Each item's window's top-left pixel, image·H·W + top·W + left, where the window lies inside the canvas (does
    # not wrap), which a CPU gathers and scatters through strided views (`window_views`); None: only `pixels` say
    corners: tuple[int | None, ...] = ()

    @property
    def plain(self) -> bool:
        """Every item's window lies inside the canvas (`corners`)."""
        return bool(self.corners) and all(corner is not None for corner in self.corners)

    def part(self, start: int, stop: int) -> Group:
        """Items start..stop of the group, as views of its tensors (one network call's share)."""
        if start == 0 and stop == len(self.items):
            return self
        per_item = self.pixels.numel() // len(self.items)

        def cut(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor[start:stop]

        return Group(self.items[start:stop], self.pairs[start:stop], self.shifts[start:stop], self.shape,
                     self.pixels[start * per_item : stop * per_item], self.regions[start:stop], self.rows[start:stop],
                     self.weight[start:stop], cut(self.mask), cut(self.tile), cut(self.outside),
                     self.lines.part(slice(start, stop)), self.corners[start:stop])


@dataclass(frozen=True)
class StepIndex:
    """Per step, its groups in call order; built for a number of images (the flat indices include the image),
    a plan, its masks and a number of bootstrap steps."""

    images: int
    steps: tuple[tuple[Group, ...], ...]
    plan: Sequence[Sequence[Pair]]
    masks: torch.Tensor
    # Per step, Σ of the items' weights at each canvas pixel, (1, N·H·W), where they do not depend on the prediction
    # (every step but a bootstrap step, whose leak weights do): the step then scatters x0 alone. None: a bootstrap step
    weight_sums: tuple[torch.Tensor | None, ...] = ()
    bootstrap_steps: int = 0

    def fits(self, plan: Sequence[Sequence[Pair]], masks: torch.Tensor, images: int, bootstrap_steps: int) -> bool:
        """Built for exactly this plan, these masks (the same objects), this many images and bootstrap steps."""
        return (self.plan is plan and self.masks is masks and self.images == images
                and self.bootstrap_steps == bootstrap_steps)


def centring_shift(mask: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """Roll (dy, dx) that moves the centre of the mask's bounding box to the window centre."""
    mask = np.asarray(mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0, 0
    height, width = mask.shape
    dy = height // 2 - (int(rows[0]) + int(rows[-1]) + 1) // 2
    dx = width // 2 - (int(cols[0]) + int(cols[-1]) + 1) // 2
    return dy, dx


def window_pixels(window: Window, height: int, width: int, shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(h, w) flat canvas indices row·W + col of a window's pixels (modulo the canvas: wrapped windows), rolled
    by `shift` as `torch.roll(window, shift)` rolls the window's contents."""
    rows, cols = window_lines(window, height, width, shift)
    return rows[:, None] * width + cols[None, :]


def window_lines(window: Window, height: int, width: int,
                 shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """(h,) canvas rows and (w,) columns of a window (modulo the canvas), each rolled by its part of `shift`."""
    rows = np.roll(np.arange(window.top, window.bottom) % height, shift[0])
    cols = np.roll(np.arange(window.left, window.right) % width, shift[1])
    return rows, cols


def lines_of(windows: Sequence[Window], shifts: Sequence[tuple[int, int]], height: int, width: int,
             device: torch.device) -> Lines:
    """The rows and columns of windows of one shape, rolled by `shifts` (empty: none), on `device`."""
    rolls = shifts or [(0, 0)] * len(windows)
    lines = [window_lines(window, height, width, shift) for window, shift in zip(windows, rolls)]
    rows, cols = (torch.from_numpy(np.stack(side)).to(device) for side in zip(*lines))
    return Lines(rows, cols, all(dx == 0 and w.right <= width for w, (_, dx) in zip(windows, rolls)))


def build(
    plan: Sequence[Sequence[Pair]], masks: torch.Tensor, weights: Sequence[Sequence[torch.Tensor]], images: int,
    bootstrap_steps: int, group_key: Callable[[int], tuple[Sequence[Hashable], Callable | None]],
) -> StepIndex:
    """Per step, its groups. `masks` (n, R, h, w) quantized on the compute device; `weights` the tile weight
    per pair; `group_key(step)` the (variants, extra key) the batcher splits calls by at that step."""
    height, width = masks.shape[-2:]
    centred = max(min(bootstrap_steps, len(plan)), 0)
    host_masks = masks[:centred].cpu().numpy() > 0 if centred else np.zeros((0,), bool)  # centring needs the host
    steps = []
    for i, pairs in enumerate(plan):
        items = [(k, j) for k in range(images) for j in range(len(pairs))]
        shifts = [_shift(host_masks, i, pair, height, width) for pair in pairs]
        variants, extra = group_key(i)
        groups = []
        for group in chunks(items, pairs, max(len(items), 1), variants, extra):
            groups.append(_group(group, pairs, shifts, masks[i], weights[i], height, width, i < bootstrap_steps))
        steps.append(tuple(groups))
    sums = tuple(None if i < bootstrap_steps else weight_sum(groups, images * height * width, masks.device)
                 for i, groups in enumerate(steps))
    return StepIndex(images, tuple(steps), plan, masks, sums, bootstrap_steps)


def weight_sum(groups: Sequence[Group], pixels: int, device: torch.device) -> torch.Tensor:
    """(1, pixels): each canvas pixel's sum of the groups' weights, added item after item as the step would."""
    total = torch.zeros(1, pixels, device=device)
    for group in groups:
        add_at(total, group.pixels, group.weight.reshape(1, -1))
    return total


def add_at(canvas: torch.Tensor, pixels: torch.Tensor, values: torch.Tensor, ordered: bool | None = None) -> None:
    """canvas[:, pixels] += values for a (C, N·H·W) canvas and (C, P) values, a pixel's values added in the order
    of `pixels` (item after item), so that a render gives the same bits every time. On a CPU `index_add_` does;
    on CUDA it adds with atomics, in whatever order the threads come, so off the CPU (`ordered`, None: any device
    but the CPU) it is `index_put_` with accumulation, which sorts the indices stably and adds each pixel's
    values in turn."""
    if not (canvas.device.type != "cpu" if ordered is None else ordered):
        canvas.index_add_(1, pixels, values)
        return
    canvas.index_put_((_channel_rows(canvas.shape[0], canvas.device), pixels[None]), values, accumulate=True)


@functools.cache
def _channel_rows(channels: int, device: torch.device) -> torch.Tensor:
    """(C, 1) long: the row index `add_at` pairs with the pixels, made once per device rather than every step."""
    return torch.arange(channels, device=device)[:, None]


def _shift(host_masks: np.ndarray, step: int, pair: Pair, height: int, width: int) -> tuple[int, int]:
    if step >= len(host_masks):
        return 0, 0
    flat = window_pixels(pair.window, height, width)
    return centring_shift(host_masks[step, pair.region].reshape(-1)[flat])


def _group(items: list[Item], pairs: Sequence[Pair], shifts: Sequence[tuple[int, int]], masks: torch.Tensor,
           weights: Sequence[torch.Tensor], height: int, width: int, bootstrapping: bool) -> Group:
    device = masks.device
    chosen = [pairs[j] for _, j in items]
    rolls = [shifts[j] for _, j in items]
    lines = lines_of([p.window for p in chosen], rolls, height, width, device)
    local = lines.rows[:, :, None] * width + lines.cols[:, None, :]  # (G, h, w): window_pixels of each item
    images = torch.tensor([k for k, _ in items], device=device)[:, None, None]
    pixels = (images * height * width + local).reshape(-1)
    regions = [p.region for p in chosen]
    planes = masks.reshape(masks.shape[0], -1)  # (R, h·w)
    at = local.reshape(len(items), -1)
    mask = planes[torch.tensor(regions, device=device)[:, None], at].view(len(items), 1, *local.shape[1:])
    tile = torch.stack([torch.roll(weights[j], s, dims=(-2, -1)) for (_, j), s in zip(items, rolls)])[:, None]
    rows = torch.tensor([k * len(pairs) + j for k, j in items])
    corners = tuple((k * height + p.window.top) * width + p.window.left if p.window.bottom <= height
                    and p.window.right <= width else None for (k, _), p in zip(items, chosen))
    return Group(tuple(items), tuple(chosen), tuple(rolls) if any(r != (0, 0) for r in rolls) else (), tuple(local.shape[1:]), pixels,
                 torch.tensor(regions, device=device), rows, mask * tile,
                 *((mask, tile, 1.0 - mask) if bootstrapping else (None, None, None)), lines, corners)
