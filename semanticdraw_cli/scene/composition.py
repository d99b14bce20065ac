"""Large compositions in the scene format: `canvas.wrap` (seamless canvases) and `hires` (a second pass).

Pure checks and sizes, no model: the schema reads both sections through these functions, and the
renderer's second pass (`hires.py`) sizes its first pass with `pass_one_canvas`.
"""

from __future__ import annotations

import math

from semanticdraw_cli import defaults as D
from semanticdraw_cli.scene.checks import Checker, describe, is_int
from semanticdraw_cli.scene.types import Canvas, Hires, Sampler

HIRES_KEYS = ("scale", "strength", "steps", "upscaler")


def wrap_axes(wrap: str) -> tuple[bool, bool]:
    """(rows wrap, columns wrap) of a `canvas.wrap` value: y wraps the rows, x the columns."""
    return wrap in ("y", "both"), wrap in ("x", "both")


def pass_one_canvas(canvas: Canvas, scale: float, multiple: int) -> Canvas:
    """The first pass's canvas: each side divided by `scale`, rounded to the family's pixel multiple."""
    def side(length: int) -> int:
        return max(multiple, round(length / scale / multiple) * multiple)

    return Canvas(side(canvas.width), side(canvas.height), canvas.wrap)


def with_wrap(c: Checker, d: object, canvas: Canvas | None, tile_size: int) -> Canvas | None:
    """The canvas with its `wrap` (`d`: the raw canvas section); a wrapped side shorter than one tile is
    refused: no window would cross its edge."""
    wrap = c.choice(d if isinstance(d, dict) else {}, "wrap", "canvas.wrap", D.WRAPS, D.WRAP)
    if canvas is None or wrap == "none":
        return canvas
    rows, cols = wrap_axes(wrap)
    for wraps, name, length in ((cols, "width", canvas.width), (rows, "height", canvas.height)):
        if wraps and length < tile_size:
            c.add("canvas.wrap", f"wrap {wrap} needs the canvas {name} to be at least one tile "
                  f"(sampler.tile.size {tile_size}), got {length}",
                  hint=f"make the canvas at least {tile_size} px {'wide' if name == 'width' else 'high'}, "
                  "or set a smaller sampler.tile.size")
    return Canvas(canvas.width, canvas.height, wrap)


def hires(c: Checker, top: dict, canvas: Canvas | None, sampler: Sampler, multiple: int) -> Hires | None:
    """The scene's `hires` section (`top`: the raw scene), or None when it has none. Pass 1 must hold at
    least one whole tile."""
    if top.get("hires") is None:
        return None
    d = c.section(top["hires"], "hires", HIRES_KEYS)
    scale = c.number(d, "scale", "hires.scale", D.HIRES_SCALE, lo=1, hi=D.MAX_CANVAS_SIDE)
    strength = c.number(d, "strength", "hires.strength", D.HIRES_STRENGTH, lo=0, hi=1)
    steps, grid = _steps(c, d.get("steps"), sampler)
    upscaler = c.choice(d, "upscaler", "hires.upscaler", D.HIRES_UPSCALERS, D.HIRES_UPSCALER)
    if canvas is not None:
        small, tile = pass_one_canvas(canvas, scale, multiple), sampler.tile.size
        if min(small.width, small.height) < tile:
            largest = min(canvas.width, canvas.height) / tile
            c.add("hires.scale", f"scale {scale:g} makes pass 1 {small.width}×{small.height}, smaller than one tile "
                  f"(sampler.tile.size {tile})", hint=f"use a scale of at most {math.floor(largest * 100) / 100:g}, "
                  "or a smaller sampler.tile.size")
    return Hires(scale, strength, steps, grid, upscaler)


def _steps(c: Checker, value: object, sampler: Sampler) -> tuple[tuple[int, ...], int]:
    """A plain count N (an N-step schedule) or increasing indices into the sampler's grid; absent: the sampler's."""
    if value is None:
        return sampler.steps, sampler.grid
    if is_int(value) and 1 <= value <= D.MAX_GRID:
        return tuple(range(value)), value
    if isinstance(value, list) and value and all(is_int(v) for v in value):
        ordered = all(b > a for a, b in zip(value, value[1:]))
        if ordered and 0 <= value[0] and value[-1] < sampler.grid:
            return tuple(value), sampler.grid
    c.add("hires.steps", f"expected a count from 1 to {D.MAX_GRID} or increasing indices into the sampler's "
          f"{sampler.grid}-step grid, got {describe(value)}", hint="e.g. steps: 4 or steps: [0, 4, 12, 25, 37]")
    return sampler.steps, sampler.grid
