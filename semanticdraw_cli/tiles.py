"""The tile grid over a large latent canvas: fixed-size windows, the last one clamped to the edge.

On a wrapped axis (`canvas.wrap`) the latent is circular: windows start every stride over the whole
length, and one that passes the far edge continues at the near one (`window_index`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """A rectangle of the latent canvas, in latent pixels."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width


def starts(length: int, size: int, stride: int) -> list[int]:
    """Window offsets along one axis: every `stride`, plus one flush with the far edge."""
    if length <= size:
        return [0]
    offsets = list(range(0, length - size + 1, stride))
    if offsets[-1] != length - size:
        offsets.append(length - size)
    return offsets


def wrapped_starts(length: int, size: int, stride: int) -> list[int]:
    """Window offsets along a circular axis: every `stride` from 0 to the end; the last ones cross the edge."""
    if size >= length and stride >= length:
        return [0]
    return list(range(0, length, stride))


def tile_grid(
    height: int, width: int, size: int, stride: int, wrap: tuple[bool, bool] = (False, False)
) -> tuple[Window, ...]:
    """Windows of `size` (clipped to the canvas) every `stride` latent pixels, row by row; `wrap`: (rows,
    columns) circular, as `canvas.wrap` says."""
    win_h, win_w = min(size, height), min(size, width)
    return tuple(
        Window(top, left, win_h, win_w)
        for top in (wrapped_starts if wrap[0] else starts)(height, win_h, stride)
        for left in (wrapped_starts if wrap[1] else starts)(width, win_w, stride)
    )


def window_index(window: Window, height: int, width: int) -> tuple[slice, slice] | tuple[np.ndarray, np.ndarray]:
    """Where a window lies on an (height, width) canvas: its slices when inside, else the (h, 1) and (1, w)
    modulo indices of a window that crosses an edge of a circular canvas (`t[..., rows, cols]` reads it)."""
    if window.bottom <= height and window.right <= width:
        return window.slices
    rows = np.arange(window.top, window.bottom) % height
    cols = np.arange(window.left, window.right) % width
    return np.ix_(rows, cols)


def centred_window(box: tuple[int, int, int, int], height: int, width: int, size: int) -> Window:
    """A window of `size` centred on box (top, left, bottom, right), shifted to stay on the canvas."""
    win_h, win_w = min(size, height), min(size, width)
    top, left, bottom, right = box
    centre_y, centre_x = (top + bottom) // 2, (left + right) // 2
    y = min(max(centre_y - win_h // 2, 0), height - win_h)
    x = min(max(centre_x - win_w // 2, 0), width - win_w)
    return Window(y, x, win_h, win_w)
