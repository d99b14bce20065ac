"""Mask math of the method (architecture.md §4): z-order, blur, block-centre downsampling, quantization."""

import numpy as np
import pytest

from semanticdraw_cli import masks as mask_math


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


def test_unreached_regions_are_those_empty_at_every_step():
    quantized = np.zeros((3, 3, 4, 4), np.float32)  # (n, R, h, w)
    quantized[2, 0, 1, 1] = 1.0  # region 0 reaches a pixel at the last step only
    quantized[0, 2] = 0.5
    assert mask_math.unreached_regions(quantized) == [1]
