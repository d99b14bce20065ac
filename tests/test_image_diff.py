"""Per-region differences of two pictures: zero for equal pictures, and each change counted in its own region."""

from __future__ import annotations

import math

import numpy as np

from semanticdraw_cli import image_diff


def picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 48, 3), dtype=np.uint8)


def two_regions() -> np.ndarray:
    masks = np.zeros((2, 32, 48), np.float32)  # (R, H, W): left half and right top quarter
    masks[0, :, :24] = 1.0
    masks[1, :16, 24:] = 1.0
    return masks


def test_equal_pictures_differ_by_nothing():
    a = picture(0)
    found = image_diff.differences(a, a.copy(), two_regions(), ("left", "right"), background=True)
    assert [area.name for area in found] == ["left", "right", "background", "image"]
    for area in found:
        assert area.mean_abs == 0.0 and math.isinf(area.psnr) and area.ssim == 1.0 and area.to_dict()["equal"]
    assert image_diff.worst(found) == 0.0


def test_a_change_inside_one_region_shows_only_there():
    a = picture(1)
    b = a.copy()
    b[:16, 24:] = np.clip(b[:16, 24:].astype(int) + 10, 0, 255).astype(np.uint8)  # the right region only
    left, right, background, whole = image_diff.differences(a, b, two_regions(), ("left", "right"), background=True)
    assert left.mean_abs == 0.0 and background.mean_abs == 0.0
    expected = np.abs(b[:16, 24:].astype(float) - a[:16, 24:]).mean()
    assert right.mean_abs == expected and 0 < right.mean_abs <= 10
    assert right.pixels == 16 * 24 and whole.mean_abs == expected * (16 * 24) / (32 * 48)
    assert right.psnr < 40 and right.ssim < 1.0


def test_ssim_of_a_picture_and_its_negative_is_negative():
    a = picture(2)
    assert image_diff.ssim_map(a, 255 - a).mean() < 0
