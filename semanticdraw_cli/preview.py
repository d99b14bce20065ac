"""The layout picture: each region filled in its own colour in z-order, outlined, with a legend beside it. No model."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from semanticdraw_cli.families.registry import family
from semanticdraw_cli.scene.composition import pass_one_canvas, wrap_axes
from semanticdraw_cli.scene.rasterize import load_rgb, rasterize_mask
from semanticdraw_cli.scene.types import Scene

# Distinct colours (Trubetskoy's list, the most separable first); golden-ratio hues after those.
PALETTE = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
           "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1")
NEUTRAL = (40, 40, 40)  # the canvas when there is no background picture
FILL_OVER_PICTURE, FILL_OVER_NEUTRAL = 0.5, 0.75  # opacity of a region's fill
PANEL, DIVIDER = (24, 24, 24), (96, 96, 96)  # the legend panel beside the layout, and the line between them
MIN_FONT = 14  # legend text height in pixels, at least
MAX_LEGEND_CHARS = 80  # a legend line is cut (with "...") at about this many characters
CONTROL_GAP = 2  # pixels of divider between the layout and each control picture
CONTROL_OUTSIDE = 0.3  # brightness of a region's control picture outside the region


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
    """The layout at canvas size, top left (a wrapped canvas twice along each wrapped axis, so its seams show),
    then each control picture, with a legend panel to their right (taller when the legend is)."""
    return _with_legend(_with_controls(tiled(draw_layout(scene), scene.canvas.wrap), scene), scene)


def tiled(layout: Image.Image, wrap: str) -> Image.Image:
    """The layout repeated twice along each wrapped axis (`canvas.wrap`): 2×2 for both."""
    rows, cols = wrap_axes(wrap)
    width, height = layout.size
    out = Image.new("RGB", (width * (1 + cols), height * (1 + rows)))
    for top in range(0, out.height, height):
        for left in range(0, out.width, width):
            out.paste(layout, (left, top))
    return out


def hires_line(scene: Scene) -> str | None:
    """The legend's line for a hires scene: the first pass's size, the scale and the strength."""
    if scene.hires is None:
        return None
    small = pass_one_canvas(scene.canvas, scene.hires.scale, family(scene.model.family).pixel_multiple)
    return (f"hires: pass 1 at {small.width}×{small.height}, upscaled ×{scene.hires.scale:g} "
            f"({scene.hires.upscaler}), pass 2 at strength {scene.hires.strength:g}")


def control_pictures(scene: Scene) -> list[np.ndarray]:
    """Each ControlNet entry's picture at canvas size, (H, W, 3) uint8, whole-canvas entries first; a region's
    picture dimmed outside the region, where its ControlNet does not act."""
    pictures = [_control_picture(entry, scene) for entry in scene.control]
    for region in scene.regions:
        if region.control:
            inside = rasterize_mask(region.mask, scene.canvas)[..., None]  # (H, W, 1)
            keep = CONTROL_OUTSIDE + (1.0 - CONTROL_OUTSIDE) * inside
            pictures += [np.round(_control_picture(e, scene) * keep).astype(np.uint8) for e in region.control]
    return pictures


def _control_picture(entry, scene: Scene) -> np.ndarray:
    if entry.image_array is not None:
        return entry.image_array
    return load_rgb(entry.image, scene.canvas, "control picture")


def _with_controls(layout: Image.Image, scene: Scene) -> Image.Image:
    """`layout`, then the control pictures side by side to its right, each after a divider line."""
    pictures = control_pictures(scene)
    if not pictures:
        return layout
    width, height = layout.size
    image = Image.new("RGB", (width + len(pictures) * (width + CONTROL_GAP), height), DIVIDER)
    image.paste(layout, (0, 0))
    for k, picture in enumerate(pictures):
        image.paste(Image.fromarray(picture, "RGB"), ((k + 1) * (width + CONTROL_GAP), 0))
    return image


def draw_layout(scene: Scene) -> Image.Image:
    """Canvas-size RGB picture of the scene's layout: each region's fill and lighter edge, in z-order."""
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
    return image


def legend_font_size(width: int, height: int) -> int:
    """Legend text grows with the canvas and stays readable on small ones."""
    return max(MIN_FONT, min(width, height) // 40)


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


def _with_legend(layout: Image.Image, scene: Scene) -> Image.Image:
    """`layout` with a panel on its right: a swatch and `name: prompt` per region, background first."""
    width, height = layout.size
    size = legend_font_size(width, height)
    font = _font(size)
    pad, row = size, size + size // 2
    entries = [(colour, f"{r.name}: {r.prompt}") for colour, r in zip(region_colours(scene), scene.regions)]
    if scene.background.prompt:
        entries.insert(0, (NEUTRAL, f"background: {scene.background.prompt}"))
    if hires_line(scene):
        entries.append((DIVIDER, hires_line(scene)))
    texts = [_fit_text(text, font, MAX_LEGEND_CHARS * size / 2) for _, text in entries]
    panel = int(3 * pad + size + max(font.getlength(text) for text in texts))
    image = Image.new("RGB", (width + panel, max(height, 2 * pad + len(entries) * row)), PANEL)
    image.paste(layout, (0, 0))
    draw = ImageDraw.Draw(image)
    draw.line([(width, 0), (width, image.height)], fill=DIVIDER, width=2)
    left = width + pad
    for k, ((colour, _), text) in enumerate(zip(entries, texts)):
        top = pad + k * row
        draw.rectangle([left - 1, top - 1, left + size, top + size], fill=(230, 230, 230))  # a light frame
        draw.rectangle([left, top, left + size - 1, top + size - 1], fill=colour)  # the swatch: one line high
        draw.text((left + size + pad, top), text, fill=(240, 240, 240), font=font)
    return image


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
