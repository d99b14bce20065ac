"""Windows as strided views (window_views): the same windows, rolls and sums as the pixel indices give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semanticdraw_cli import window_views
from semanticdraw_cli.step_index import window_pixels
from semanticdraw_cli.tiles import Window

HEIGHT, WIDTH, CHANNELS = 9, 13, 3
WINDOWS = [Window(0, 0, 5, 6), Window(4, 7, 5, 6), Window(2, 3, 5, 6), Window(4, 7, 5, 6)]
SHIFTS = [(0, 0), (2, -1), (-4, 5), (1, 0)]


def corners(images):
    return [(k * HEIGHT + win.top) * WIDTH + win.left for k in images for win in WINDOWS]


@pytest.mark.parametrize("rolled", [False, True])
def test_gathered_windows_equal_rolled_slices(rolled):
    canvas = torch.randn(2, CHANNELS, HEIGHT, WIDTH)
    flat = canvas.transpose(0, 1).reshape(CHANNELS, -1)
    shifts = SHIFTS * 2 if rolled else ()
    out = torch.empty(8, CHANNELS, 5, 6)
    window_views.gather(flat, corners([0, 1]), shifts, (5, 6), WIDTH, out)
    for n, (k, win) in enumerate((k, win) for k in (0, 1) for win in WINDOWS):
        expected = canvas[k][(slice(None), *win.slices)]
        if rolled:
            expected = torch.roll(expected, SHIFTS[n % 4], dims=(-2, -1))
        assert torch.equal(out[n], expected)


@pytest.mark.parametrize("rolled", [False, True])
def test_scatter_adds_like_index_add_in_the_same_order(rolled):
    """Bit-equal to `index_add_` through the rolled pixel indices, overlapping windows included (the 2nd and 4th)."""
    values = torch.randn(4, CHANNELS, 5, 6)
    shifts = SHIFTS if rolled else ()
    pixels = np.concatenate([window_pixels(win, HEIGHT, WIDTH, s).reshape(-1)
                             for win, s in zip(WINDOWS, shifts or [(0, 0)] * 4)])
    expected = torch.full((CHANNELS, HEIGHT * WIDTH), 0.1)
    expected.index_add_(1, torch.from_numpy(pixels), values.transpose(0, 1).reshape(CHANNELS, -1))
    got = torch.full((CHANNELS, HEIGHT * WIDTH), 0.1)
    window_views.scatter(got, values, corners([0]), shifts, WIDTH)
    assert torch.equal(got, expected)


def test_blocks_cover_the_window_once():
    for shift in [(0, 0), (3, 0), (0, -2), (7, 11), (-1, -1)]:
        seen = np.zeros((5, 6), int)
        for rows, cols, rolled_top, rolled_left, _, _ in window_views.blocks(5, 6, shift):
            seen[rolled_top : rolled_top + rows, rolled_left : rolled_left + cols] += 1
        assert (seen == 1).all(), shift
