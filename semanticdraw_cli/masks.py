"""Mask math of the method (architecture.md §4): z-order, blur, strength, per-step quantization, background.

Pure numpy. Region masks arrive rasterized at canvas size by `rasterize`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

COVERED_MARGIN = 1e-4  # above cover_alpha: a covered mask is cover_alpha up to float32 rounding and blur
COVER_SUM_TOLERANCE = 1e-6  # float32 rounding of 1 − Σ + Σ where a background prompt completes the sum


def apply_z_order(masks: np.ndarray, cover_alpha: float) -> np.ndarray:
    """Later regions lie on top: where one is present, earlier masks keep `cover_alpha` of their value."""
    out = masks.astype(np.float32, copy=True)  # (R, H, W)
    cover = np.zeros(masks.shape[1:], np.float32)  # union of the regions above
    for r in range(len(masks) - 1, -1, -1):
        out[r] *= 1.0 - (1.0 - cover_alpha) * cover
        np.maximum(cover, masks[r], out=cover)
    return out


def gaussian_kernel(std: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * std))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / std) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_blur(mask: np.ndarray, std: float, wrap: tuple[bool, bool] = (False, False)) -> np.ndarray:
    """Separable Gaussian blur with reflected edges, circular along the axes `wrap` (rows, columns) names;
    std in pixels, 0 leaves the mask as it is."""
    if std <= 0:
        return mask.astype(np.float32, copy=True)
    kernel = gaussian_kernel(std)
    radius = len(kernel) // 2
    out = mask.astype(np.float32)
    for axis in (0, 1):
        if wrap[axis]:  # a circular canvas: the far edge continues at the near one
            pad_mode = "wrap"
        elif out.shape[axis] <= radius:  # too small to reflect: pad by edge values instead
            pad_mode = "edge"
        else:
            pad_mode = "reflect"
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode=pad_mode)
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for k, weight in enumerate(kernel):
            acc += weight * (padded[k : k + n] if axis == 0 else padded[:, k : k + n])
        out = acc
    return out


def prepare_masks(
    raw: np.ndarray, blurs: Sequence[float], strengths: Sequence[float], cover_alpha: float,
    wrap: tuple[bool, bool] = (False, False),
) -> np.ndarray:
    """Rasterized region masks -> z-ordered, blurred (circular along `wrap`'s axes), strength-scaled masks,
    still at canvas size."""
    ordered = apply_z_order(raw, cover_alpha)  # (R, H, W)
    out = np.empty_like(ordered)
    for r, (blur, strength) in enumerate(zip(blurs, strengths, strict=True)):
        out[r] = np.clip(gaussian_blur(ordered[r], blur, wrap) * strength, 0.0, 1.0)
    return out


def to_latent(masks: np.ndarray, factor: int = 8) -> np.ndarray:
    """Nearest downsampling to latent size: each latent pixel takes its 8×8 block's centre sample.

    The authors' code takes the block's top-left pixel instead, which moves every region down and right
    of what was drawn: on the example scenes a region's centroid (latent pixels seen as 8×8 blocks) moves
    by 2.7–3.5 px down-right on average, up to 4.2 px, against 0.2–0.7 px up-left with the centre sample.
    """
    return np.ascontiguousarray(masks[..., factor // 2 :: factor, factor // 2 :: factor])  # (R, h, w)


def quantize(masks: np.ndarray, levels: Sequence[float], mode: str, cover_alpha: float) -> np.ndarray:
    """Per-step masks (n, R, h, w): a region grows from its core as the noise level falls.

    The paper's quantized masks (arXiv 2403.09055, §3.2 Step 3): the blurred mask M is compared with the
    noise level of each step, M_r^i = 1[M_r > s_i], so that a soft edge is admitted step by step.
    `levels` holds the n + 1 noise levels s_0 > ... > s_n (s_n = 0 after the last step).
    discrete: [M > s_i]; continuous: clip((M - s_{i+1}) / (s_i - s_{i+1}), 0, 1);
    semi-continuous: discrete except the last step. A discrete last step compares against
    `last_threshold`, so that what another region covers stays out to the end (z-order, `cover_alpha`).
    """
    n = len(levels) - 1
    out = np.empty((n, *masks.shape), np.float32)
    for i in range(n):
        continuous = mode == "continuous" or (mode == "semi-continuous" and i == n - 1)
        if continuous:
            span = max(levels[i] - levels[i + 1], 1e-8)
            out[i] = np.clip((masks - levels[i + 1]) / span, 0.0, 1.0)
        else:
            out[i] = masks > (last_threshold(levels, cover_alpha) if i == n - 1 else levels[i])
    return out


def last_threshold(levels: Sequence[float], cover_alpha: float) -> float:
    """The discrete last step's threshold: its level, or just above `cover_alpha` where that level is not.

    A covered region keeps `cover_alpha` of its mask (0.3), meant to lie below every noise level so that the
    region on top alone paints the overlap: true of the 5-step LCM schedule the method was tuned on (last
    level 0.58). A 4-step schedule can end lower (FLUX.1-schnell: 0.24), which would bring every covered
    part back at the last step as a 50/50 mix with the region on top. Where the step before still kept
    covered parts out, the last step keeps them out too; a larger `cover_alpha`, which lets covered parts
    in earlier on purpose, is left alone.
    """
    n = len(levels) - 1
    last = levels[n - 1]
    if n >= 2 and last <= cover_alpha < levels[n - 2]:
        return cover_alpha + COVERED_MARGIN
    return last


def unreached_regions(quantized: np.ndarray) -> list[int]:
    """Indices of the regions of (n, R, h, w) per-step masks that cover no latent pixel at any step.

    Such a region (e.g. 4×4 canvas pixels between the 8×8 blocks' centres) gets no (window, region) pair,
    so the sampler skips it; callers warn that it paints nothing.
    """
    return [r for r in range(quantized.shape[1]) if not quantized[:, r].any()]


def background_mask(quantized: np.ndarray) -> np.ndarray:
    """What no region covers at each step: clip(1 - sum_r M_r^i, 0, 1), shape (n, h, w)."""
    return np.clip(1.0 - quantized.sum(axis=1), 0.0, 1.0)


def with_background(quantized: np.ndarray) -> np.ndarray:
    """Prepend the background prompt as region 0: (n, R, h, w) -> (n, R + 1, h, w)."""
    return np.concatenate([background_mask(quantized)[:, None], quantized], axis=1)


def uncovered(quantized: np.ndarray) -> np.ndarray:
    """(n, h, w) bool: the latent pixels where the (n, R, h, w) per-step masks add up to less than 1.

    Only there may a fill (white, without a background prompt) show through; where the masks add up to 1
    the sampler normalises by the summed weights, as the authors' code does. A background prompt (region 0
    completes the sum) leaves no pixel uncovered; so does a region drawn under the others over the canvas,
    except at the soft edges of the regions on top while their masks are still growing.
    """
    return quantized.sum(axis=1) < 1.0 - COVER_SUM_TOLERANCE


def covers_every_pixel(quantized: np.ndarray) -> bool:
    """Whether the (n, R, h, w) per-step masks add up to at least 1 at every latent pixel of every step."""
    return not uncovered(quantized).any()


def blend_over_background(images: np.ndarray, original: np.ndarray, canvas_masks: np.ndarray) -> np.ndarray:
    """Where no region lies the original pixels come back exactly; soft edges follow the blurred masks."""
    alpha = np.clip(canvas_masks.sum(axis=0), 0.0, 1.0)[None, ..., None]  # (1, H, W, 1)
    mixed = alpha * images.astype(np.float32) + (1.0 - alpha) * original[None].astype(np.float32)
    return np.where(alpha > 0, np.clip(np.rint(mixed), 0, 255), original[None]).astype(np.uint8)
