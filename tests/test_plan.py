"""The planner (architecture.md §4): which (window, region) pairs run, and their weights. Pure numpy."""

import numpy as np
import pytest

from semanticdraw_cli.plan import Pair, bounding_box, pair_weights, plan_step, region_windows, spread
from semanticdraw_cli.tiles import Window, tile_grid


def irworobongdo_like_masks() -> np.ndarray:
    """Nine latent-size (96 x 160) masks in the spirit of the Irworobongdo layout."""
    m = np.zeros((9, 96, 160), np.float32)
    m[0] = 1.0  # sky everywhere
    m[1, 40:70, :] = 1.0  # mountains across
    m[2, 10:25, 10:25] = 1.0  # sun, far left: only window 0
    m[3, 10:25, 135:150] = 1.0  # moon, far right: windows 1 and 2 (window 1 spans 48..144)
    m[4, 30:90, 40:55] = 1.0  # waterfall left
    m[5, 30:90, 105:120] = 1.0  # waterfall right
    m[6, 70:96, :] = 1.0  # lake across
    m[7, 20:96, 0:20] = 1.0  # tree, left edge: only window 0
    m[8, 20:96, 140:160] = 1.0  # tree, right edge: windows 1 (x < 144) and 2
    return m


def test_reference_plan_is_every_region_on_every_window():
    grid = tile_grid(96, 160, 96, 48)
    pairs = plan_step(irworobongdo_like_masks(), grid, "reference", 96)
    assert len(pairs) == 27
    assert set(pairs) == {Pair(v, r) for v in grid for r in range(9)}


def test_default_plan_skips_exactly_the_empty_pairs():
    masks = irworobongdo_like_masks()
    grid = tile_grid(96, 160, 96, 48)
    pairs = plan_step(masks, grid, "default", 96)
    expected = {Pair(v, r) for v in grid for r in range(9) if masks[r][v.slices].any()}
    assert set(pairs) == expected
    assert len(pairs) == len(set(pairs))  # no duplicates
    # by hand (windows span x 0..96, 48..144, 64..160): sun and left tree only in window 0; left waterfall
    # (40..55) not in window 2; right waterfall (105..120), moon (135..150), right tree (140..) not in window 0
    skipped = {(v.left, r) for v in grid for r in range(9)} - {(p.window.left, p.region) for p in pairs}
    assert skipped == {(48, 2), (64, 2), (64, 4), (0, 5), (48, 7), (64, 7), (0, 3), (0, 8)}
    assert len(pairs) == 19


def test_default_plan_keeps_order_and_sees_single_pixels():
    grid = tile_grid(96, 160, 96, 48)
    masks = np.zeros((2, 96, 160), np.float32)
    masks[1, 95, 159] = 0.5  # one non-zero pixel in the corner, only the last window
    pairs = plan_step(masks, grid, "default", 96)
    assert pairs == (Pair(grid[2], 1),)
    assert plan_step(np.zeros((3, 96, 160)), grid, "default", 96) == ()


def test_pair_weights_sum_to_one_per_covered_pixel_per_region():
    masks = irworobongdo_like_masks()
    grid = tile_grid(96, 160, 96, 48)
    for mode in ("default", "reference", "regions"):
        pairs = plan_step(masks, grid, mode, 96)
        weights = pair_weights(pairs, 96, 160, 9)
        total = np.zeros((9, 96, 160), np.float32)
        covered = np.zeros((9, 96, 160), bool)
        for pair, w in zip(pairs, weights):
            assert w.shape == (pair.window.height, pair.window.width)
            total[pair.region][pair.window.slices] += w
            covered[pair.region][pair.window.slices] = True
        np.testing.assert_allclose(total[covered], 1.0, rtol=1e-6)
        assert (total[~covered] == 0).all()


def test_pair_weights_hand_computed_overlap():
    grid = tile_grid(96, 160, 96, 48)  # windows span x 0..96, 48..144, 64..160
    w0, w1, w2 = pair_weights([Pair(v, 0) for v in grid], 96, 160, 1)
    assert w0[0, 0] == 1.0 and w0[0, 47] == 1.0  # x < 48: window 0 alone
    assert w0[0, 48] == 0.5 and w0[0, 63] == 0.5  # 48..64: windows 0, 1
    assert w0[0, 64] == pytest.approx(1 / 3) and w1[0, 95 - 48] == pytest.approx(1 / 3)  # 64..96: all three
    assert w1[0, 96 - 48] == 0.5 and w1[0, 143 - 48] == 0.5 and w2[0, 143 - 64] == 0.5  # 96..144: 1, 2
    assert w2[0, 144 - 64] == 1.0 and w2[0, 159 - 64] == 1.0  # 144..160: window 2 alone


def test_regions_plan_covers_every_nonzero_pixel_of_each_region():
    masks = irworobongdo_like_masks()
    grid = tile_grid(96, 160, 96, 48)
    pairs = plan_step(masks, grid, "regions", 96)
    for r in range(9):
        covered = np.zeros((96, 160), bool)
        for pair in pairs:
            if pair.region == r:
                covered[pair.window.slices] = True
        assert covered[masks[r] > 0].all(), f"region {r} not covered"
    # a small region gets one window centred on its bounding box
    sun = [p.window for p in pairs if p.region == 2]
    assert sun == [Window(0, 0, 96, 96)]  # centre (17, 17) shifted onto the canvas
    # the canvas-wide sky needs two windows along x (160 > 96), evenly spread
    assert sorted(p.window.left for p in pairs if p.region == 0) == [0, 64]


def test_regions_plan_random_masks_are_covered():
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width, tile = rng.integers(8, 80), rng.integers(8, 200), int(rng.integers(4, 64))
        mask = (rng.random((height, width)) > rng.uniform(0.9, 1.0)).astype(np.float32)
        covered = np.zeros(mask.shape, bool)
        for v in region_windows(mask, tile):
            assert 0 <= v.top and v.bottom <= height and 0 <= v.left and v.right <= width
            covered[v.slices] = True
        assert covered[mask > 0].all()


def test_bounding_box_edges():
    assert bounding_box(np.zeros((4, 5))) is None
    one = np.zeros((4, 5))
    one[3, 4] = 0.1
    assert bounding_box(one) == (3, 4, 4, 5)  # exclusive ends
    assert bounding_box(np.ones((4, 5))) == (0, 0, 4, 5)
    two = np.zeros((6, 6))
    two[1, 4] = two[4, 1] = 1
    assert bounding_box(two) == (1, 1, 5, 5)


@pytest.mark.parametrize(
    "lo, hi, size, length, expected",
    [
        (10, 20, 8, 100, [10, 12]),  # span 10 > 8: two windows, first at lo, last flush with hi
        (0, 5, 8, 100, [0]),  # short span near the start: clamped to 0
        (95, 100, 8, 100, [92]),  # short span at the end: clamped to length - size
        (40, 50, 20, 100, [35]),  # centred: (40 + 50) // 2 - 10
        (0, 100, 40, 100, [0, 30, 60]),  # three windows evenly spread over the whole axis
        (0, 30, 64, 30, [0]),  # window larger than the canvas: size clipped to the length
    ],
)
def test_spread(lo, hi, size, length, expected):
    assert spread(lo, hi, size, length) == expected
