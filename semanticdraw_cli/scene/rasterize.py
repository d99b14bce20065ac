"""Mask sources -> (H, W) float32 coverage in [0, 1] at canvas size; background pictures -> (H, W, 3) uint8.

Pure numpy + Pillow. Shapes are anti-aliased by exact horizontal coverage on 4 sub-rows per pixel row
(a scanline rasterizer), so a 1280×768 shape takes a few milliseconds. Image files are refused before
decoding when over `defaults.MAX_MASK_IMAGE_PIXELS` and reported as `MaskError`, never a traceback.
"""

from __future__ import annotations

import functools
import io
import math
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import MaskError
from semanticdraw_cli.scene.safe_io import PICTURE, InputRefused, read_bytes
from semanticdraw_cli.scene.types import Canvas, Mask

POSITIONS = {"rect": (0, 1), "ellipse": (0, 1)}  # coords that are positions (x, y); a polygon's are all

SUB_ROWS = 4  # vertical samples per pixel row; horizontal coverage is exact
_SPAN_BUDGET = 1 << 22  # cells (sub-rows × columns or × edges) processed at once, bounds memory
_PIL_LOCK = threading.Lock()  # Image.MAX_IMAGE_PIXELS is process-wide; change it under a lock


def rasterize_mask(mask: Mask, canvas: Canvas) -> np.ndarray:
    """The region's coverage at canvas size: (H, W) float32 in [0, 1]."""
    if mask.kind == "image":
        return _image_mask(mask.path, canvas)
    if mask.kind == "label_map":
        return _label_mask(mask.path, mask.color, canvas)
    if mask.kind == "array":
        return _array_mask(mask.array, canvas)
    if canvas.wrap != "none":
        return _wrapped_shape(mask, canvas)
    coords = _pixel_coords(mask, canvas)
    if mask.kind == "rect":
        x, y, w, h = coords
        return _polygon([(x, y), (x + w, y), (x + w, y + h), (x, y + h)], canvas)
    if mask.kind == "ellipse":
        return _ellipse(*coords, canvas)
    if mask.kind == "polygon":
        return _polygon(list(zip(coords[0::2], coords[1::2])), canvas)
    raise ValueError(f"unknown mask kind {mask.kind!r}")  # a bug: the loader only builds the kinds above


def load_rgb(path: Path, canvas: Canvas, what: str = "background image") -> np.ndarray:
    """A background (or control) picture at canvas size, (H, W, 3) uint8; resized (Lanczos) when only the size differs."""
    image = _open_image(path)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")  # transparent parts over white, as a painter would see them
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    image = image.convert("RGB")
    image = _fit(image, path, canvas, Image.Resampling.LANCZOS, what)
    return np.asarray(image, dtype=np.uint8).copy()


def read_rgb(path: Path) -> np.ndarray:
    """A picture as it is, (H, W, 3) uint8, through the bounded reader and the header's pixel limit."""
    return np.asarray(_open_image(path).convert("RGB"), dtype=np.uint8).copy()


# --- image files -------------------------------------------------------------------------------


def _open_image(path: Path | None) -> Image.Image:
    """Decode a picture, refusing a decompression bomb from its header, before decoding any pixel.

    The file is read through the bounded reader (a regular file of at most MAX_PICTURE_BYTES). Pillow's
    own bomb check would refuse at its limit, not ours, without naming the size: it is switched off
    while the header is read (under a lock, since the setting is global) and our limit applied instead.
    """
    if path is None:
        raise MaskError("no file given", hint="name an image file")
    try:
        data = read_bytes(path, PICTURE)
    except InputRefused as error:
        if error.missing:
            raise MaskError(f"file not found: {path}", hint="paths are relative to the scene file's folder") from None
        raise MaskError(str(error), hint=error.hint) from None
    limit = defaults.MAX_MASK_IMAGE_PIXELS
    too_big = "{w}×{h} = {n:,} pixels is over the limit of {limit:,} pixels"
    hint = "downscale the picture; it only needs the canvas size"
    with _PIL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we check the header size ourselves
        try:
            with Image.open(io.BytesIO(data)) as image:
                w, h = image.size
                if w * h > limit:
                    raise MaskError(f"{path.name}: " + too_big.format(w=w, h=h, n=w * h, limit=limit), hint=hint)
                image.load()
                return image
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise MaskError(f"{path.name}: image over the limit of {limit:,} pixels", hint=hint) from None
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            reason = str(error) or type(error).__name__
            raise MaskError(f"cannot decode {path.name}: {reason}", hint="re-export it as PNG") from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _fit(image: Image.Image, path: Path, canvas: Canvas, resample: int, what: str) -> Image.Image:
    """Resize to the canvas when the aspect ratio matches; refuse other sizes naming both."""
    size = (canvas.width, canvas.height)
    if image.size == size:
        return image
    w, h = image.size
    aspect, target = w / h, canvas.width / canvas.height
    if abs(aspect / target - 1.0) > defaults.MASK_RESIZE_ASPECT_TOLERANCE:
        raise MaskError(
            f"{what} {path.name} is {w}×{h} (aspect {aspect:.3f}) but the canvas is "
            f"{canvas.width}×{canvas.height} (aspect {target:.3f})",
            hint=f"use a picture of {canvas.width}×{canvas.height} or of the same aspect ratio",
        )
    return image.resize(size, resample)


def _image_mask(path: Path | None, canvas: Canvas) -> np.ndarray:
    """Alpha when the picture has one, else its gray value (luminance for colour pictures)."""
    image = _open_image(path)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        gray = image.convert("RGBA").getchannel("A")
    elif image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        high = 1.0 if image.mode == "F" else 65535.0
        gray = Image.fromarray(np.asarray(image, dtype=np.float32) / high * 255.0, mode="F")
    else:
        gray = image.convert("L")
    gray = _fit(gray if gray.mode == "F" else gray.convert("F"), path, canvas, Image.Resampling.BILINEAR, "mask")
    return np.clip(np.asarray(gray, dtype=np.float32) / 255.0, 0.0, 1.0)


def _label_mask(path: Path | None, color: tuple[int, int, int] | None, canvas: Canvas) -> np.ndarray:
    """1 where the map is within LABEL_COLOR_TOLERANCE of `color` on every channel, else 0."""
    if color is None:
        raise MaskError("label map without a colour", hint='add color: "#rrggbb"')
    try:
        stat = path.stat() if path is not None else None
    except (OSError, ValueError):
        stat = None  # the reader reports it
    key = (stat.st_mtime_ns, stat.st_size) if stat else None
    rgb = _label_rgb(path, key, canvas)  # (H, W, 3) uint8, read-only, cached
    diff = np.abs(rgb.astype(np.int16) - np.asarray(color, np.int16))
    inside = (diff <= defaults.LABEL_COLOR_TOLERANCE).all(axis=2)
    if not inside.any():
        raise MaskError(
            f"colour {_hex(color)} does not occur in {path.name}",
            hint="colours in the map, most common first: " + _colour_census(rgb),
        )
    return inside.astype(np.float32)


@functools.lru_cache(maxsize=2)  # several regions read one map; the key holds the file's mtime and size
def _label_rgb(path: Path | None, _stat_key: tuple | None, canvas: Canvas) -> np.ndarray:
    image = _open_image(path)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    image = _fit(image.convert("RGB"), path, canvas, Image.Resampling.NEAREST, "label map")
    rgb = np.asarray(image, dtype=np.uint8).copy()
    rgb.flags.writeable = False
    return rgb


def _colour_census(rgb: np.ndarray, shown: int = 8) -> str:
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    values, counts = np.unique(packed.ravel(), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    total = packed.size
    parts = [f"#{int(values[i]):06x} ({100 * counts[i] / total:.1f}%)" for i in order[:shown]]
    more = len(values) - shown
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _array_mask(array: np.ndarray | None, canvas: Canvas) -> np.ndarray:
    shape = (canvas.height, canvas.width)
    if array is None or np.shape(array) != shape:
        got = "nothing" if array is None else "×".join(map(str, np.shape(array)))
        raise MaskError(f"mask array is {got}, expected {shape[0]}×{shape[1]} (H×W)")
    out = np.asarray(array, dtype=np.float32)
    if not np.isfinite(out).all():
        raise MaskError("mask array holds NaN or infinite values")
    return np.clip(out, 0.0, 1.0)


# --- shapes ------------------------------------------------------------------------------------


def _wrapped_shape(mask: Mask, canvas: Canvas) -> np.ndarray:
    """A shape on a circular canvas: what passes an edge comes back at the other (copies one canvas away)."""
    from semanticdraw_cli.scene.composition import wrap_axes

    rows, cols = wrap_axes(canvas.wrap)
    plain = Canvas(canvas.width, canvas.height)
    span = (1.0, 1.0) if mask.fractional else (float(canvas.width), float(canvas.height))
    out = np.zeros((canvas.height, canvas.width), np.float32)
    for dy in (-1, 0, 1) if rows else (0,):
        for dx in (-1, 0, 1) if cols else (0,):
            moved = [
                v + (dx * span[0] if i % 2 == 0 else dy * span[1])
                if i in POSITIONS.get(mask.kind, range(len(mask.coords))) else v
                for i, v in enumerate(mask.coords)
            ]
            np.maximum(out, rasterize_mask(Mask(mask.kind, coords=tuple(moved), fractional=mask.fractional), plain),
                       out=out)
    return out


def _pixel_coords(mask: Mask, canvas: Canvas) -> tuple[float, ...]:
    """Coordinates in pixels: fractions scale x-like values by the width and y-like by the height."""
    if not mask.fractional:
        return tuple(float(v) for v in mask.coords)
    scale = (canvas.width, canvas.height)
    return tuple(float(v) * scale[i % 2] for i, v in enumerate(mask.coords))


def _polygon(points: list[tuple[float, float]], canvas: Canvas) -> np.ndarray:
    """Even-odd fill of a closed polygon."""
    xy = np.asarray(points, dtype=np.float64)  # (P, 2)
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)  # edge k runs from point k to point k+1

    def spans(ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = ys[:, None]  # (S, 1) against edges (1, P)
        crosses = (y0 <= y) != (y1 <= y)  # half-open: a vertex on the line counts once
        with np.errstate(divide="ignore", invalid="ignore"):
            x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        x = np.sort(np.where(crosses, x, np.inf), axis=1)  # crossings first, in order
        if x.shape[1] % 2:
            x = np.concatenate([x, np.full((len(x), 1), np.inf)], axis=1)
        return x[:, 0::2], x[:, 1::2]  # enter/leave pairs; (inf, inf) pairs cover nothing

    return _raster(spans, float(y0.min()), float(y0.max()), canvas, len(points))


def _ellipse(cx: float, cy: float, rx: float, ry: float, canvas: Canvas) -> np.ndarray:
    def spans(ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = 1.0 - ((ys - cy) / ry) ** 2
        half = np.where(t > 0, rx * np.sqrt(np.maximum(t, 0.0)), np.nan)
        return (cx - half)[:, None], (cx + half)[:, None]

    return _raster(spans, cy - ry, cy + ry, canvas, 1)


def _raster(spans, top: float, bottom: float, canvas: Canvas, edges: int) -> np.ndarray:
    """Coverage from `spans(sub-row centres) -> (left, right)` arrays of shape (S, K), row band by band."""
    width, height = canvas.width, canvas.height
    out = np.zeros((height, width), np.float32)
    if not (math.isfinite(top) and math.isfinite(bottom)):
        return out
    first, last = max(0, math.floor(top)), min(height, math.ceil(bottom))  # rows the shape can touch
    band = max(1, _SPAN_BUDGET // (SUB_ROWS * max(width + 2, edges)))
    for start in range(first, last, band):
        stop = min(last, start + band)
        ys = (np.arange(start * SUB_ROWS, stop * SUB_ROWS) + 0.5) / SUB_ROWS  # sub-row centres
        left, right = spans(ys)
        out[start:stop] = _coverage(left, right, width)
    return out


def _coverage(left: np.ndarray, right: np.ndarray, width: int) -> np.ndarray:
    """(S / SUB_ROWS, W) share of each pixel inside the spans [left, right) of its sub-rows; exact in x."""
    a = np.clip(np.nan_to_num(left, nan=0.0, posinf=width, neginf=0.0), 0, width)
    b = np.clip(np.nan_to_num(right, nan=0.0, posinf=width, neginf=0.0), 0, width)
    b = np.maximum(a, b)
    # Covered length of pixel i left of x: R_i(x) = clip(x - i, 0, 1) = 1 left of floor(x), the fraction
    # x - floor(x) at floor(x), 0 right of it. Coverage = R(b) - R(a): a step up at floor(a), down at
    # floor(b) (summed by cumsum), plus the fractions at both ends. Sub-rows of a pixel row add up.
    rows, stride = a.shape[0] // SUB_ROWS, width + 2
    row = (np.arange(a.shape[0]) // SUB_ROWS * stride)[:, None]  # (S, 1) offset of the pixel row
    cells = np.floor(np.stack([a, b]))  # (2, S, K)
    idx = (row + cells.astype(np.int64)).ravel()
    sign = np.array([1.0, -1.0])[:, None, None] / SUB_ROWS
    step = np.bincount(idx, np.broadcast_to(sign, cells.shape).ravel(), minlength=rows * stride)
    part = np.bincount(idx, (-sign * (np.stack([a, b]) - cells)).ravel(), minlength=rows * stride)
    cover = np.cumsum(step.reshape(rows, stride), axis=1) + part.reshape(rows, stride)
    return np.clip(cover[:, :width], 0.0, 1.0).astype(np.float32)
