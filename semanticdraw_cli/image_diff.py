"""How two renders of a scene differ, per region: mean absolute difference, PSNR and SSIM under each region's
pixels (the areas `score` uses: where a region's render mask is strongest and at least 0.5), the uncovered
background and the whole image. Pure functions of arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from semanticdraw_cli import masks as mask_math
from semanticdraw_cli.defaults import SSIM_STD
from semanticdraw_cli.score import area_masks

PEAK = 255.0
SSIM_C1, SSIM_C2 = (0.01 * PEAK) ** 2, (0.03 * PEAK) ** 2  # Wang et al. 2004


@dataclass(frozen=True)
class AreaDifference:
    name: str  # a region's name, "background" or "image"
    pixels: int
    mean_abs: float | None  # 0-255; None for an area without pixels
    psnr: float | None  # dB; inf when equal
    ssim: float | None  # mean of the SSIM map under the area; 1 when equal

    def to_dict(self) -> dict:
        psnr = None if self.psnr is None or math.isinf(self.psnr) else self.psnr  # JSON has no inf: null is "equal"
        return {"name": self.name, "pixels": self.pixels, "mean_abs": self.mean_abs, "psnr": psnr, "ssim": self.ssim,
                "equal": self.mean_abs == 0.0}


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) SSIM of two (H, W, 3) uint8 pictures, Gaussian window of SSIM_STD, averaged over channels."""
    total = np.zeros(a.shape[:2], np.float64)
    for channel in range(a.shape[2]):
        x, y = a[..., channel].astype(np.float64), b[..., channel].astype(np.float64)
        blur = lambda v: mask_math.gaussian_blur(v, SSIM_STD).astype(np.float64)  # noqa: E731
        mx, my = blur(x), blur(y)
        vx, vy, cov = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        total += ((2 * mx * my + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
    return total / a.shape[2]


def area_difference(name: str, a: np.ndarray, b: np.ndarray, area: np.ndarray, ssim: np.ndarray) -> AreaDifference:
    pixels = int(area.sum())
    if pixels == 0:
        return AreaDifference(name, 0, None, None, None)
    delta = a[area].astype(np.float64) - b[area].astype(np.float64)  # (P, 3)
    mse = float(np.mean(delta**2))
    psnr = math.inf if mse == 0 else 10 * math.log10(PEAK**2 / mse)
    return AreaDifference(name, pixels, float(np.mean(np.abs(delta))), psnr, 1.0 if mse == 0 else float(ssim[area].mean()))


def differences(a: np.ndarray, b: np.ndarray, masks: np.ndarray | None = None, names: tuple[str, ...] = (),
                background: bool = False) -> list[AreaDifference]:
    """Each region's (render masks (R, H, W) named `names`), the uncovered background's when `background`, and
    the whole image's difference of two (H, W, 3) uint8 pictures of one size."""
    ssim = ssim_map(a, b)
    found = []
    if masks is not None and len(masks):
        inside, uncovered = area_masks(masks)
        found += [area_difference(name, a, b, inside[k], ssim) for k, name in enumerate(names)]
        if background:
            found.append(area_difference("background", a, b, uncovered, ssim))
    found.append(area_difference("image", a, b, np.ones(a.shape[:2], bool), ssim))
    return found


def worst(found: list[AreaDifference]) -> float:
    """The largest mean absolute difference of any area (0 when all are equal)."""
    return max((area.mean_abs for area in found if area.mean_abs is not None), default=0.0)
