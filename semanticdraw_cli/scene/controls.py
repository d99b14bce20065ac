"""`control:` entries of a scene, as checks: the whole canvas's (top level) and each region's.

`control: [{model: id-or-path, image: path, weight: 1.0, start: 0.0, end: 1.0}]`. Everything that can be
refused without a model is refused here (exit 2): a family without ControlNet support, a missing local
model or picture, a picture of another aspect ratio, `start` after `end`. A ControlNet of another family
is found when it loads (exit 1, naming it).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from semanticdraw_cli import defaults as D
from semanticdraw_cli.families import registry
from semanticdraw_cli.scene.checks import Checker, describe
from semanticdraw_cli.scene.control_layers import FromLayer
from semanticdraw_cli.scene.rasterize import load_rgb
from semanticdraw_cli.scene.safe_io import exists
from semanticdraw_cli.scene.sources import check_picture, path_field
from semanticdraw_cli.scene.types import Canvas, Control, Region

KEYS = ("model", "image", "weight", "start", "end")
HUB_ID = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
EXAMPLE = "control: [{model: lllyasviel/control_v11p_sd15_canny, image: edges.png, weight: 1.0}]"


def parse(c: Checker, value: object, key: str, base: Path, canvas: Canvas | None, family: str) -> tuple[Control, ...]:
    """The entries of one `control:` list (absent: none); a drawing's `control` layer may give an entry's picture."""
    if value is None:
        return ()
    if not isinstance(value, list):
        c.add(key, f"expected a list of control entries, got {describe(value)}", hint=EXAMPLE)
        return ()
    if value and registry.family(family).control_class is None:
        having = [name for name, spec in registry.families().items() if spec.control_class]
        c.add(key, f"the {family} family has no ControlNet support", hint="use " + ", ".join(having))
        return ()
    return tuple(entry for i, raw in enumerate(value)
                 if (entry := _entry(c, raw, f"{key}[{i}]", base, canvas)) is not None
                 and _family_has_preset(c, entry, f"{key}[{i}].model", family))


def _family_has_preset(c: Checker, entry: Control, key: str, family: str) -> bool:
    """A preset ControlNet is built from the family preset of its name: refused when the family has none."""
    having = registry.family(family).presets
    if entry.model in D.CONTROL_PRESETS and entry.model not in having:
        c.add(key, f"the {family} family has no {entry.model!r} preset to build a ControlNet from",
              hint="use " + ", ".join(name for name in D.CONTROL_PRESETS if name in having))
        return False
    return True


def attach(c: Checker, top: dict, regions: tuple[Region, ...], base: Path, canvas: Canvas | None,
           family: str) -> tuple[tuple[Region, ...], tuple[Control, ...]]:
    """The regions with their own entries, and the whole canvas's entries."""
    raw = top.get("regions") if isinstance(top.get("regions"), list) else []
    with_control = []
    for i, region in enumerate(regions):
        d = raw[i] if i < len(raw) and isinstance(raw[i], dict) else {}
        entries = parse(c, d.get("control"), f"regions[{i}].control", base, canvas, family)
        with_control.append(_with(region, entries))
    return tuple(with_control), parse(c, top.get("control"), "control", base, canvas, family)


def _with(region: Region, entries: tuple[Control, ...]) -> Region:
    return replace(region, control=entries) if entries else region


def _entry(c: Checker, raw: object, key: str, base: Path, canvas: Canvas | None) -> Control | None:
    if not isinstance(raw, dict):
        c.add(key, f"expected a mapping {{model: ..., image: ...}}, got {describe(raw)}", hint=EXAMPLE)
        return None
    d = c.section(raw, key, KEYS)
    model = _model(c, d.get("model"), f"{key}.model", base)
    from_layer = isinstance(d.get("image"), FromLayer)  # a drawing's control layer: pixels attached after loading
    image = None if from_layer else c.text(d, "image", f"{key}.image", None)
    path = path_field(c, image, base, f"{key}.image") if image else None
    if path is not None:
        check_picture(c, f"{key}.image", path, canvas, lambda: load_rgb(path, canvas, "control picture"))
    elif not image and not from_layer:
        c.add(f"{key}.image", "missing", hint="the control picture (edges, depth, pose) at canvas size")
    weight = c.number(d, "weight", f"{key}.weight", D.CONTROL_WEIGHT, lo=0, hi=D.MAX_CONTROL_WEIGHT)
    start = c.number(d, "start", f"{key}.start", 0.0, lo=0, hi=1)
    end = c.number(d, "end", f"{key}.end", 1.0, lo=0, hi=1)
    if start is not None and end is not None and start > end:
        c.add(f"{key}.start", f"start {start} is after end {end}", hint="fractions of the steps, start <= end")
    if model is None:
        return None
    return Control(model, path, weight, start, end)


def _model(c: Checker, value: object, key: str, base: Path) -> str | None:
    """A preset name or hub id as it is; a local folder made absolute, refused when missing."""
    if not isinstance(value, str) or not value.strip():
        c.add(key, "missing" if value is None else f"expected a hub id, folder or preset, got {describe(value)}",
              hint="model: lllyasviel/control_v11p_sd15_canny, a local folder, or tiny")
        return None
    if value in D.CONTROL_PRESETS:
        return value
    local = path_field(c, value, base, key, confine=False)
    if local is None:
        return None
    if exists(local):
        return str(local)
    if value.startswith(("/", "./", "../", "~")) or not HUB_ID.fullmatch(value):
        c.add(key, f"ControlNet not found: {local}",
              hint="a local folder (./name, relative to the scene file), a hub id (owner/name) or " + ", ".join(D.CONTROL_PRESETS))
        return None
    return value


def to_dicts(entries: tuple[Control, ...]) -> list[dict]:
    """The entries as a scene dict's `control:` list (absolute paths)."""
    return [{"model": e.model, "image": str(e.image) if e.image is not None else None, "weight": e.weight,
             "start": e.start, "end": e.end} for e in entries]
