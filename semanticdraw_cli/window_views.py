"""A step's windows as strided views of the canvas, for a CPU (architecture.md §4.1).

On a CPU the host does the arithmetic, an operation costs microseconds and a window's rows are contiguous
runs of the canvas: copying a window through a view beats indexing each of its pixels. A window rolled by
mask-centering bootstrapping (arXiv 2403.09055 §3.2, Step 2) is up to four rectangular blocks, each copied
to (and added back from) its rolled place. Windows that cross a wrapped canvas's edge are left to the
step's pixel indices (`step_index.Group.pixels`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def blocks(height: int, width: int, shift: tuple[int, int]) -> Iterator[tuple[int, int, int, int, int, int]]:
    """(rows, cols, rolled top, rolled left, window top, window left) of each block that `torch.roll(window,
    shift)` moves as a whole: its pixel (r, c) of the window lands at ((r + dy) mod h, (c + dx) mod w)."""
    dy, dx = shift[0] % height, shift[1] % width
    row_runs = [(height - dy, dy, 0), (dy, 0, height - dy)] if dy else [(height, 0, 0)]
    col_runs = [(width - dx, dx, 0), (dx, 0, width - dx)] if dx else [(width, 0, 0)]
    for rows, rolled_top, top in row_runs:
        for cols, rolled_left, left in col_runs:
            yield rows, cols, rolled_top, rolled_left, top, left


def _view(flat: torch.Tensor, start: int, rows: int, cols: int, row_stride: int) -> torch.Tensor:
    """(C, rows, cols) view of a (C, ·) tensor whose second axis is a row-major plane `row_stride` wide."""
    step = flat.stride(1)
    return flat.as_strided((flat.shape[0], rows, cols), (flat.stride(0), row_stride * step, step),
                           flat.storage_offset() + start * step)


def gather(flat: torch.Tensor, corners: Sequence[int], shifts: Sequence[tuple[int, int]], shape: tuple[int, int],
           width: int, out: torch.Tensor) -> torch.Tensor:
    """Into `out` (G, C, h, w): each item's h×w window of the (C, N·H·W) canvas `width` wide whose top-left pixel
    is its corner, rolled by its shift (shifts (): none rolled)."""
    h, w = shape
    if not shifts:
        return torch.stack([_view(flat, corner, h, w, width) for corner in corners], out=out)
    items = out.view(out.shape[0], out.shape[1], -1)
    for item, corner, shift in zip(items, corners, shifts):
        for rows, cols, rolled_top, rolled_left, top, left in blocks(h, w, shift):
            _view(item, rolled_top * w + rolled_left, rows, cols, w).copy_(
                _view(flat, corner + top * width + left, rows, cols, width))
    return out


def scatter(flat: torch.Tensor, values: torch.Tensor, corners: Sequence[int], shifts: Sequence[tuple[int, int]],
            width: int) -> None:
    """Add each item's (C or 1, h, w) values, rolled back by its shift, into its window of the canvas, item after
    item (the order `index_add_` adds in)."""
    h, w = values.shape[-2:]
    items = values.reshape(values.shape[0], values.shape[1], -1)
    for n, (item, corner) in enumerate(zip(items, corners)):
        for rows, cols, rolled_top, rolled_left, top, left in blocks(h, w, shifts[n] if shifts else (0, 0)):
            _view(flat, corner + top * width + left, rows, cols, width).add_(
                _view(item, rolled_top * w + rolled_left, rows, cols, w))
