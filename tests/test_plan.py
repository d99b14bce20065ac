"""Tile grid, planner and mask math (architecture.md §4): pure numpy, milliseconds, no model."""

import numpy as np
import pytest

from semanticdraw_cli import masks as mask_math
from semanticdraw_cli.plan import Pair, bounding_box, pair_weights, plan_step, region_windows, spread
from semanticdraw_cli.tiles import Window, centred_window, starts, tile_grid

# --- tile grid -------------------------------------------------------------------------------------


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


# --- planner ----------------------------------------------------------------------------------------


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


def test_centred_window_stays_on_canvas():
    assert centred_window((0, 0, 2, 2), 96, 160, 96) == Window(0, 0, 96, 96)
    assert centred_window((90, 150, 96, 160), 96, 160, 96) == Window(0, 64, 96, 96)
    assert centred_window((40, 70, 50, 90), 96, 160, 48) == Window(21, 56, 48, 48)


# --- mask math --------------------------------------------------------------------------------------


def test_quantize_discrete_against_hand_values():
    masks = np.array([[[0.0, 0.5, 0.9, 1.0]]], np.float32)  # (R=1, h=1, w=4)
    levels = [0.95, 0.6, 0.2, 0.0]
    q = mask_math.quantize(masks, levels, "discrete")
    assert q.shape == (3, 1, 1, 4)
    np.testing.assert_array_equal(q[:, 0, 0], [[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]])


def test_quantize_continuous_and_semi_continuous():
    masks = np.array([[[0.0, 0.4, 0.8, 1.0]]], np.float32)
    levels = [1.0, 0.6, 0.2, 0.0]
    cont = mask_math.quantize(masks, levels, "continuous")[:, 0, 0]
    # step i: clip((M - s_{i+1}) / (s_i - s_{i+1}), 0, 1)
    np.testing.assert_allclose(cont[0], [0, 0, 0.5, 1], atol=1e-6)
    np.testing.assert_allclose(cont[1], [0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(cont[2], [0, 1, 1, 1], atol=1e-6)
    semi = mask_math.quantize(masks, levels, "semi-continuous")[:, 0, 0]
    np.testing.assert_array_equal(semi[0], [0, 0, 0, 0])  # discrete: M > 1.0 nowhere
    np.testing.assert_array_equal(semi[1], [0, 0, 1, 1])
    np.testing.assert_allclose(semi[2], cont[2], atol=1e-6)  # the last step is continuous


def test_quantize_grows_regions_monotonically():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 8, 8)).astype(np.float32)
    levels = [0.9977, 0.966, 0.86, 0.60, 0.26, 0.0]  # an LCM schedule's noise levels, s_n = 0
    q = mask_math.quantize(masks, levels, "discrete")
    assert q.shape == (5, 3, 8, 8)
    assert (np.diff(q, axis=0) >= 0).all()
    for i in range(5):  # step i compares against s_i; s_n only bounds the continuous ramp
        np.testing.assert_array_equal(q[i], masks > levels[i])


def test_with_background_fills_the_rest():
    q = np.zeros((2, 2, 1, 3), np.float32)  # (n, R, h, w)
    q[0, 0, 0] = [1, 0, 0]
    q[0, 1, 0] = [1, 0.5, 0]
    q[1, 0, 0] = [0.25, 0.25, 0]
    out = mask_math.with_background(q)
    assert out.shape == (2, 3, 1, 3)
    np.testing.assert_allclose(out[0, 0, 0], [0, 0.5, 1])  # clip(1 - (1 + 1), 0, 1) = 0
    np.testing.assert_allclose(out[1, 0, 0], [0.75, 0.75, 1])
    np.testing.assert_array_equal(out[:, 1:], q)


def test_apply_z_order_hand_values():
    masks = np.zeros((3, 1, 4), np.float32)
    masks[0, 0] = [1, 1, 1, 1]
    masks[1, 0] = [0, 1, 1, 0]
    masks[2, 0] = [0, 0, 0.5, 1]
    out = mask_math.apply_z_order(masks, 0.3)
    np.testing.assert_allclose(out[2, 0], [0, 0, 0.5, 1])  # the top region is untouched
    # region 1 under region 2: keeps 1 - 0.7 * cover, cover = 0.5 at x=2
    np.testing.assert_allclose(out[1, 0], [0, 1, 0.65, 0])
    # region 0 under the union (max) of 1 and 2: cover = [0, 1, 1, 1]
    np.testing.assert_allclose(out[0, 0], [1, 0.3, 0.3, 0.3], atol=1e-6)
    np.testing.assert_array_equal(mask_math.apply_z_order(masks, 1.0), masks)  # alpha 1: no occlusion


def test_to_latent_takes_block_centres():
    canvas = np.zeros((1, 16, 24), np.float32)
    canvas[0, 4, 12] = 1.0  # the centre sample of latent pixel (0, 1)
    canvas[0, 0, 0] = 1.0  # a corner sample is not a centre: dropped
    latent = mask_math.to_latent(canvas)
    assert latent.shape == (1, 2, 3)
    np.testing.assert_array_equal(latent[0], [[0, 1, 0], [0, 0, 0]])


def test_gaussian_blur_keeps_mass_and_zero_blur_is_identity():
    mask = np.zeros((21, 21), np.float32)
    mask[10, 10] = 1.0
    blurred = mask_math.gaussian_blur(mask, 1.5)
    assert blurred.sum() == pytest.approx(1.0, rel=1e-5)
    assert blurred[10, 10] == blurred.max() and blurred[10, 9] == pytest.approx(blurred[9, 10])
    np.testing.assert_array_equal(mask_math.gaussian_blur(mask, 0), mask)
