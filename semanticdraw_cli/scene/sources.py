"""The scene's references to files and its mask sources, as checks: paths, pictures, shapes and colours."""

from __future__ import annotations

import re
from pathlib import Path

from semanticdraw_cli import defaults as D
from semanticdraw_cli.errors import MaskError
from semanticdraw_cli.scene.safe_io import PICTURE, InputRefused, check_file, resolve_path
from semanticdraw_cli.scene.types import Canvas, Mask
from semanticdraw_cli.scene.checks import Checker, describe, is_int, is_number

UNITS = ("px", "fraction")
SHAPES = {"rect": 4, "ellipse": 4, "polygon": None}  # coordinate count; polygon: pairs, at least 3
MASK_KINDS = ("image", "label_map", *SHAPES, "layer")
MASK_KEYS = (*MASK_KINDS, "color", "units")


def path_field(c: Checker, text: str, base: Path, key: str, confine: bool = True) -> Path | None:
    """The absolute path a scene names (see `safe_io.resolve_path`); None and a problem when refused."""
    try:
        return resolve_path(text, base, confine=confine and not c.allow_outside)
    except InputRefused as error:
        c.add(key, str(error), error.hint)
        return None


def check_picture(c: Checker, key: str, path: Path, canvas: Canvas | None, read) -> None:
    """Read the picture now (exists, decodes, fits the canvas, holds the colour); only the file without a canvas."""
    if canvas is None:
        try:
            check_file(path, PICTURE)
        except InputRefused as error:
            hint = "paths are relative to the scene file's folder" if error.missing else error.hint
            c.add(key, f"file not found: {path}" if error.missing else str(error), hint)
        return
    try:
        read()
    except MaskError as error:
        c.add(key, str(error), error.hint)


def mask_source(c: Checker, value: object, key: str, base: Path) -> Mask | None:
    if isinstance(value, str) and value:
        path = path_field(c, value, base, key)
        return Mask("image", path=path) if path is not None else None
    if not isinstance(value, dict):
        got = "missing" if value is None else f"expected a mask source, got {describe(value)}"
        c.add(key, got, hint="e.g. mask: {ellipse: [cx, cy, rx, ry]}, mask: {polygon: [[x, y], ...]} or mask: mask.png")
        return None
    d = c.section(value, key, MASK_KEYS)
    kinds = [k for k in MASK_KINDS if k in d]
    if len(kinds) != 1:
        found = "none" if not kinds else ", ".join(kinds)
        c.add(key, f"give exactly one of image, label_map, rect, ellipse, polygon (found {found})")
        return None
    kind = kinds[0]
    if "color" in d and kind != "label_map":
        c.add(f"{key}.color", "applies to label_map masks only")
    if "units" in d and kind not in SHAPES:
        c.add(f"{key}.units", "applies to rect, ellipse and polygon masks only")
    if kind == "layer":
        c.add(f"{key}.layer", "layer masks come from a layered drawing", hint="load the .psd/.ora file itself")
        return None
    if kind in ("image", "label_map"):
        path = c.text(d, kind, f"{key}.{kind}", None)
        if not path:
            c.add(f"{key}.{kind}", "expected the path of a picture")
            return None
        color = _color(c, d.get("color"), f"{key}.color") if kind == "label_map" else None
        resolved = path_field(c, path, base, f"{key}.{kind}")
        return Mask(kind, path=resolved, color=color) if resolved is not None and (kind == "image" or color) else None
    units = c.choice(d, "units", f"{key}.units", UNITS, UNITS[0])
    coords = _coords(c, kind, d[kind], f"{key}.{kind}")
    return Mask(kind, coords=coords, fractional=units == "fraction") if coords else None


def _coords(c: Checker, kind: str, value: object, key: str) -> tuple[float, ...] | None:
    syntax = {"rect": "[x, y, width, height]", "ellipse": "[cx, cy, rx, ry]", "polygon": "[[x, y], [x, y], [x, y], ...]"}
    if kind == "polygon":
        points = value if isinstance(value, list) else None
        if points is None or not all(isinstance(p, list) and len(p) == 2 for p in points):
            c.add(key, f"expected a list of [x, y] points, got {describe(value)}", hint=f"{kind}: {syntax[kind]}")
            return None
        if len(points) < 3:
            c.add(key, f"a polygon needs at least 3 points, got {len(points)}", hint=f"{kind}: {syntax[kind]}")
            return None
        if len(points) > D.MAX_POLYGON_POINTS:
            c.add(key, f"{len(points):,} points; a polygon may have at most {D.MAX_POLYGON_POINTS:,}",
                  hint="simplify the outline, or draw the region as a mask picture")
            return None
        flat = [v for p in points for v in p]
    else:
        if not isinstance(value, list) or len(value) != SHAPES[kind]:
            c.add(key, f"expected {syntax[kind]}, got {describe(value)}")
            return None
        flat = value
    if not all(is_number(v) for v in flat):
        c.add(key, f"coordinates must be finite numbers, got {describe(value)}", hint=f"{kind}: {syntax[kind]}")
        return None
    if max(abs(v) for v in flat) > D.MAX_SHAPE_COORDINATE:
        c.add(key, f"coordinates must lie within ±{D.MAX_SHAPE_COORDINATE:,}, got {describe(value)}",
              hint="shapes far beyond the canvas cover nothing more")
        return None
    if kind != "polygon" and min(flat[2:]) <= 0:
        what = "width and height" if kind == "rect" else "radii"
        c.add(key, f"{what} must be positive, got {describe(value)}")
        return None
    return tuple(float(v) for v in flat)


def _color(c: Checker, value: object, key: str) -> tuple[int, int, int] | None:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value.strip()):
        text = value.strip()
        return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
    if isinstance(value, list) and len(value) == 3 and all(is_int(v) and 0 <= v <= 255 for v in value):
        return tuple(value)
    if value is None:
        c.add(key, "missing: a label_map mask needs the colour of its region",
              hint='color: "#f59e0b" in quotes (an unquoted # starts a YAML comment) or color: [245, 158, 11]')
    else:
        c.add(key, f"expected \"#rrggbb\" or [r, g, b] (0-255), got {describe(value)}")
    return None


def looks_local(text: str) -> bool:
    """Text that names a local path even when nothing is there: ./x, ../x, /x, ~/x, or a weights file."""
    return text.startswith(("/", "./", "../", "~")) or text.endswith(D.WEIGHT_FILE_SUFFIXES)
