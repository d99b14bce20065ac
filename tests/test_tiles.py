"""The tile grid and window placement (architecture.md §4): pure numpy, no model."""

import numpy as np
import pytest

from semanticdraw_cli.tiles import Window, centred_window, starts, tile_grid, window_index


def test_irworobongdo_canvas_has_three_windows():
    grid = tile_grid(768 // 8, 1280 // 8, 768 // 8, 384 // 8)  # latent 96 x 160, tile 96, stride 48
    assert grid == (Window(0, 0, 96, 96), Window(0, 48, 96, 96), Window(0, 64, 96, 96))


@pytest.mark.parametrize(
    "length, size, stride, expected",
    [
        (160, 96, 48, [0, 48, 64]),  # last window clamped flush with the edge
        (144, 96, 48, [0, 48]),  # stride lands exactly on the edge: no extra window
        (96, 96, 48, [0]),
        (40, 96, 48, [0]),  # canvas smaller than a tile: one (clipped) window
        (100, 64, 8, [0, 8, 16, 24, 32, 36]),
    ],
)
def test_starts(length, size, stride, expected):
    assert starts(length, size, stride) == expected


@pytest.mark.parametrize("height, width, size, stride", [(96, 160, 96, 48), (48, 80, 48, 24), (37, 91, 16, 7), (10, 20, 64, 8)])
def test_grid_covers_canvas_and_stays_inside(height, width, size, stride):
    grid = tile_grid(height, width, size, stride)
    covered = np.zeros((height, width), int)
    for v in grid:
        assert 0 <= v.top and v.bottom <= height and 0 <= v.left and v.right <= width
        assert (v.height, v.width) == (min(size, height), min(size, width))  # one window shape per canvas
        covered[v.slices] += 1
    assert covered.min() >= 1


def test_small_canvas_window_is_clipped():
    assert tile_grid(10, 20, 64, 8) == (Window(0, 0, 10, 20),)


def test_centred_window_stays_on_canvas():
    assert centred_window((0, 0, 2, 2), 96, 160, 96) == Window(0, 0, 96, 96)
    assert centred_window((90, 150, 96, 160), 96, 160, 96) == Window(0, 64, 96, 96)
    assert centred_window((40, 70, 50, 90), 96, 160, 48) == Window(21, 56, 48, 48)


def test_a_wrapped_axis_has_windows_every_stride_that_cross_the_far_edge():
    grid = tile_grid(8, 24, 8, 4, wrap=(False, True))
    assert sorted({w.left for w in grid}) == [0, 4, 8, 12, 16, 20]  # no window flush with the edge
    assert {w.top for w in grid} == {0} and all(w.width == 8 for w in grid)
    assert tile_grid(8, 24, 8, 4) == tile_grid(8, 24, 8, 4, wrap=(False, False))


def test_a_window_across_the_edge_indexes_the_canvas_modulo_its_size():
    canvas = np.arange(6 * 10).reshape(6, 10)
    rows, cols = window_index(Window(4, 7, 4, 5), 6, 10)
    assert canvas[rows, cols].tolist() == [[r * 10 + c for c in (7, 8, 9, 0, 1)] for r in (4, 5, 0, 1)]
    assert window_index(Window(1, 2, 4, 5), 6, 10) == Window(1, 2, 4, 5).slices  # inside: plain slices
