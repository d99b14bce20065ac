"""The layout picture: each region filled in its own colour in z-order, outlined, with a legend. No model."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from semanticdraw_cli.rasterize import load_rgb, rasterize_mask
from semanticdraw_cli.scene import Scene

# Distinct colours (Trubetskoy's list, the most separable first); golden-ratio hues after those.
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
           "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1")
NEUTRAL = (40, 40, 40)  # the canvas when there is no background picture
FILL_OVER_PICTURE, FILL_OVER_NEUTRAL = 0.5, 0.75  # opacity of a region's fill


def region_colour(index: int) -> tuple[int, int, int]:
    """The preview colour of the index-th region (0-based), distinct from its neighbours."""
    if index < len(PALETTE):
        text = PALETTE[index]
        return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
    r, g, b = colorsys.hsv_to_rgb((index * 0.618033988749895) % 1.0, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def region_colours(scene: Scene) -> list[tuple[int, int, int]]:
    """One distinct colour per region: a label-map region keeps its label colour, others take the palette."""
    labels = [r.mask.color if r.mask.kind == "label_map" else None for r in scene.regions]
    taken, out, k = set(filter(None, labels)), [], 0
    for label in labels:
        if label is not None and label not in out:
            out.append(tuple(label))
            continue
        while region_colour(k) in taken:
            k += 1
        out.append(region_colour(k))
        k += 1
    return out


def draw_preview(scene: Scene) -> Image.Image:
    """Canvas-size RGB picture of the scene's layout with a `name: prompt` legend in the bottom-left corner."""
    size = (scene.canvas.width, scene.canvas.height)
    picture = _background(scene)
    image = Image.fromarray(picture, "RGB") if picture is not None else Image.new("RGB", size, NEUTRAL)
    opacity = FILL_OVER_PICTURE if picture is not None else FILL_OVER_NEUTRAL
    for region, colour in zip(scene.regions, region_colours(scene)):  # z-order: later regions on top
        mask = rasterize_mask(region.mask, scene.canvas)  # (H, W) in [0, 1]
        weight = Image.fromarray(np.round(mask * (opacity * 255)).astype(np.uint8), "L")
        image = Image.composite(Image.new("RGB", size, colour), image, weight)
        edge = Image.fromarray(_outline(mask >= 0.5).astype(np.uint8) * 255, "L")
        image.paste(tuple(c // 2 + 128 for c in colour), mask=edge)  # a lighter edge
    _legend(image, scene)
    return image


def _background(scene: Scene) -> np.ndarray | None:
    if scene.background.image_array is not None:
        return np.asarray(scene.background.image_array, np.uint8)
    if scene.background.image is not None:
        return load_rgb(scene.background.image, scene.canvas)
    return None


def _outline(inside: np.ndarray) -> np.ndarray:
    """Inside pixels within 2 px of the outside (a boolean edge 2 px thick)."""
    edge = np.zeros_like(inside)
    if not inside.any():
        return edge
    for _ in range(2):
        core = inside.copy()  # inside pixels whose 4 neighbours are inside too
        core[1:] &= inside[:-1]
        core[:-1] &= inside[1:]
        core[:, 1:] &= inside[:, :-1]
        core[:, :-1] &= inside[:, 1:]
        edge |= inside & ~core
        inside = core
    return edge


def _legend(image: Image.Image, scene: Scene) -> None:
    """A translucent box in the bottom-left corner: swatch + `name: prompt` per region, top entry first."""
    width, height = image.size
    size = max(10, min(width, height) // 48)
    font = _font(size)
    pad, gap = size // 2, size // 3
    entries = [(colour, f"{r.name}: {r.prompt}") for colour, r in zip(region_colours(scene), scene.regions)]
    if scene.background.prompt:
        entries.insert(0, (NEUTRAL, f"background: {scene.background.prompt}"))
    rows = max(1, (height - 2 * pad) // (size + gap) - 1)
    if len(entries) > rows:  # more entries than fit: keep the first ones and say how many are left
        entries = entries[: rows - 1] + [(None, f"... and {len(entries) - rows + 1} more")]
    max_text = width - 4 * pad - size
    texts = [_fit_text(text, font, max_text) for _, text in entries]
    text_width = max(font.getlength(t) for t in texts)
    box_w = int(min(width - 2 * pad, 3 * pad + size + text_width))
    box_h = len(entries) * (size + gap) + 2 * pad - gap
    left, top = pad, height - pad - box_h
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle([left, top, left + box_w, top + box_h], fill=(0, 0, 0, 170))
    for k, ((colour, _), text) in enumerate(zip(entries, texts)):
        y = top + pad + k * (size + gap)
        if colour is not None:
            draw.rectangle([left + pad, y, left + pad + size, y + size], fill=(*colour, 255), outline=(230, 230, 230, 255))
        draw.text((left + 2 * pad + size, y), text, fill=(240, 240, 240, 255), font=font)
    image.paste(Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB"))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _fit_text(text: str, font, max_width: float) -> str:
    """`text`, or its longest prefix that fits with "..." added: a binary search, O(log n) measurements."""
    if font.getlength(text) <= max_width:
        return text
    fits, too_long = 0, len(text)  # text[:fits] + "..." fits (or fits is 0); text[:too_long] + "..." does not
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if font.getlength(text[:middle] + "...") <= max_width:
            fits = middle
        else:
            too_long = middle
    return text[:fits] + "..."
