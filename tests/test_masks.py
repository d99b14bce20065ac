"""Mask math of the method (architecture.md §4): z-order, blur, block-centre downsampling, quantization."""

import numpy as np
import pytest

from semanticdraw_cli import masks as mask_math

NO_COVER = 1.0  # cover_alpha 1: no region lies on another


def test_quantize_discrete_against_hand_values():
    masks = np.array([[[0.0, 0.5, 0.9, 1.0]]], np.float32)  # (R=1, h=1, w=4)
    levels = [0.95, 0.6, 0.2, 0.0]
    q = mask_math.quantize(masks, levels, "discrete", NO_COVER)
    assert q.shape == (3, 1, 1, 4)
    np.testing.assert_array_equal(q[:, 0, 0], [[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]])


def test_quantize_continuous_and_semi_continuous():
    masks = np.array([[[0.0, 0.4, 0.8, 1.0]]], np.float32)
    levels = [1.0, 0.6, 0.2, 0.0]
    cont = mask_math.quantize(masks, levels, "continuous", NO_COVER)[:, 0, 0]
    # step i: clip((M - s_{i+1}) / (s_i - s_{i+1}), 0, 1)
    np.testing.assert_allclose(cont[0], [0, 0, 0.5, 1], atol=1e-6)
    np.testing.assert_allclose(cont[1], [0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(cont[2], [0, 1, 1, 1], atol=1e-6)
    semi = mask_math.quantize(masks, levels, "semi-continuous", NO_COVER)[:, 0, 0]
    np.testing.assert_array_equal(semi[0], [0, 0, 0, 0])  # discrete: M > 1.0 nowhere
    np.testing.assert_array_equal(semi[1], [0, 0, 1, 1])
    np.testing.assert_allclose(semi[2], cont[2], atol=1e-6)  # the last step is continuous


def test_quantize_grows_regions_monotonically():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 8, 8)).astype(np.float32)
    levels = [0.9977, 0.966, 0.86, 0.60, 0.26, 0.0]  # an LCM schedule's noise levels, s_n = 0
    q = mask_math.quantize(masks, levels, "discrete", NO_COVER)
    assert q.shape == (5, 3, 8, 8)
    assert (np.diff(q, axis=0) >= 0).all()
    for i in range(5):  # step i compares against s_i; s_n only bounds the continuous ramp
        np.testing.assert_array_equal(q[i], masks > levels[i])


SCHNELL_LEVELS = [0.7071, 0.6, 0.4472, 0.2425, 0.0]  # FLUX.1-schnell's 4 steps, σ/sqrt(1 + σ²)
LCM_LEVELS = [0.9977, 0.9942, 0.9735, 0.8499, 0.5840, 0.0]  # SD1.5 + LCM, the schedule the method was tuned on


def covered_pair() -> np.ndarray:
    """Region 0 over the whole row, region 1 on top of its right half, z-ordered with cover_alpha 0.3, (2, 1, 4)."""
    raw = np.zeros((2, 1, 4), np.float32)
    raw[0] = 1.0
    raw[1, 0, 2:] = 1.0
    return mask_math.apply_z_order(raw, 0.3)


def test_a_last_level_below_cover_alpha_keeps_covered_parts_out():
    q = mask_math.quantize(covered_pair(), SCHNELL_LEVELS, "discrete", 0.3)
    np.testing.assert_array_equal(q[-1, 0, 0], [1, 1, 0, 0])  # region 0 is out where region 1 lies on it
    np.testing.assert_array_equal(q[-1, 1, 0], [0, 0, 1, 1])
    np.testing.assert_array_equal(q[-2], q[-1])  # as at the step before
    assert mask_math.last_threshold(SCHNELL_LEVELS, 0.3) == pytest.approx(0.3, abs=1e-3)


@pytest.mark.parametrize("levels, cover_alpha", [
    (LCM_LEVELS, 0.3),  # the last level is above cover_alpha already
    (SCHNELL_LEVELS, 0.5),  # covered parts come in at step 2 on purpose: the last step does not undo it
    (SCHNELL_LEVELS, 1.0),  # no cover
])
def test_the_last_threshold_is_the_last_level_elsewhere(levels, cover_alpha):
    assert mask_math.last_threshold(levels, cover_alpha) == levels[-2]
    masks = np.random.default_rng(2).random((3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(mask_math.quantize(masks, levels, "discrete", cover_alpha)[-1], masks > levels[-2])


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


def test_covers_every_pixel_only_when_every_step_sums_to_one():
    q = np.zeros((2, 2, 1, 3), np.float32)  # (n, R, h, w)
    q[:, 0] = 1.0  # a region under the other one, over the whole canvas at both steps
    q[:, 1, 0, 1] = 1.0
    assert mask_math.covers_every_pixel(q)
    q[0, 0, 0, 2] = 0.0  # one pixel of the first step left to the fill
    assert not mask_math.covers_every_pixel(q)
    q[0, 0, 0, 2] = 0.5  # half covered is not covered
    assert not mask_math.covers_every_pixel(q)
    partial = np.random.default_rng(0).random((3, 2, 4, 4)).astype(np.float32) * 0.6
    assert not mask_math.covers_every_pixel(partial)
    assert mask_math.covers_every_pixel(mask_math.with_background(partial))  # a background prompt completes it


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


def test_unreached_regions_are_those_empty_at_every_step():
    quantized = np.zeros((3, 3, 4, 4), np.float32)  # (n, R, h, w)
    quantized[2, 0, 1, 1] = 1.0  # region 0 reaches a pixel at the last step only
    quantized[0, 2] = 0.5
    assert mask_math.unreached_regions(quantized) == [1]


def test_blur_is_circular_along_a_wrapped_axis_only():
    mask = np.zeros((12, 12), np.float32)
    mask[:, 0] = 1.0  # a line on the left edge
    wrapped = mask_math.gaussian_blur(mask, 1.5, wrap=(False, True))
    assert wrapped[:, -1].min() > 0.1  # it bleeds across to the right edge
    moved = mask_math.gaussian_blur(np.roll(mask, 6, axis=1), 1.5, wrap=(False, True))
    assert np.allclose(wrapped, np.roll(moved, -6, axis=1))
    assert mask_math.gaussian_blur(mask, 1.5)[:, -1].max() == 0.0  # reflected edges: nothing reaches the far side
