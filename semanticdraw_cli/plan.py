"""Which (window, region) pairs a step evaluates, and their tile weights: numpy, moved to the device last.

`default` skips pairs whose quantized mask is empty in the window (zero weight: `reference`'s image up to
float rounding);
`reference` evaluates every region on every window, as the authors' code does;
`regions` places windows per region, centred on its mask's bounding box (opt-in, a different image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from semanticdraw_cli.lazy import lazy_module
from semanticdraw_cli.tiles import Window, centred_window, window_index

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


@dataclass(frozen=True)
class Pair:
    window: Window
    region: int  # index into the step's masks (0 is the background prompt when there is one)


def plan_step(step_masks: np.ndarray, grid: Sequence[Window], mode: str, tile_size: int) -> tuple[Pair, ...]:
    """Pairs to evaluate for one step; `step_masks` is (R, h, w)."""
    if mode == "reference":
        return tuple(Pair(v, r) for v in grid for r in range(len(step_masks)))
    if mode == "regions":
        return tuple(
            Pair(v, r) for r, mask in enumerate(step_masks) for v in region_windows(mask, tile_size)
        )
    height, width = step_masks.shape[-2:]
    return tuple(
        Pair(v, r) for v in grid for r, mask in enumerate(step_masks) if mask[window_index(v, height, width)].any()
    )


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the non-zero pixels, exclusive ends; None when empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def spread(lo: int, hi: int, size: int, length: int) -> list[int]:
    """Fewest window offsets of `size` covering [lo, hi), evenly spread, kept on [0, length)."""
    size = min(size, length)
    span = hi - lo
    if span <= size:
        return [min(max((lo + hi) // 2 - size // 2, 0), length - size)]
    count = math.ceil(span / size)
    return [min(max(lo + round(j * (span - size) / (count - 1)), 0), length - size) for j in range(count)]


def region_windows(mask: np.ndarray, tile_size: int) -> list[Window]:
    """Windows for one region: one centred on its bounding box, or the fewest that cover it."""
    box = bounding_box(mask)
    if box is None:
        return []
    height, width = mask.shape
    top, left, bottom, right = box
    if bottom - top <= tile_size and right - left <= tile_size:
        return [centred_window(box, height, width, tile_size)]
    win_h, win_w = min(tile_size, height), min(tile_size, width)
    return [
        Window(y, x, win_h, win_w)
        for y in spread(top, bottom, tile_size, height)
        for x in spread(left, right, tile_size, width)
    ]


def pair_weights(pairs: Sequence[Pair], height: int, width: int, regions: int) -> list[np.ndarray]:
    """Tile weights T per pair: 1 / (windows of the same region covering the pixel), so they sum to 1."""
    counts = np.zeros((regions, height, width), np.float32)
    for pair in pairs:
        counts[pair.region][window_index(pair.window, height, width)] += 1.0
    return [1.0 / counts[pair.region][window_index(pair.window, height, width)] for pair in pairs]


def planned_steps(
    quantized: np.ndarray, grid: Sequence[Window], mode: str, tile_size: int, device: torch.device
) -> tuple[tuple[tuple[Pair, ...], ...], tuple[tuple[torch.Tensor, ...], ...]]:
    """(pairs, tile weights) for every step of the (n, R, h, w) quantized masks, weights on `device`."""
    regions, height, width = quantized.shape[1:]
    plans = tuple(plan_step(step_masks, grid, mode, tile_size) for step_masks in quantized)
    weights = tuple(
        tuple(torch.from_numpy(w).to(device) for w in pair_weights(pairs, height, width, regions)) for pairs in plans
    )
    return plans, weights
