"""The scene's `reroll` section: re-render only the named regions over an earlier image, keeping the rest.

`reroll: {from: IMAGE.png, regions: [name, ...]}` is what `render --from IMAGE.png --reroll NAME` writes
into the scene it renders, so that the PNG it embeds renders again to the same picture.
"""

from __future__ import annotations

from pathlib import Path

from semanticdraw_cli.scene.checks import Checker, describe
from semanticdraw_cli.scene.sources import check_picture, path_field
from semanticdraw_cli.scene.rasterize import load_rgb
from semanticdraw_cli.scene.types import Canvas, Region, Reroll

KEYS = ("from", "regions")


def reroll_section(c: Checker, value: object, base: Path, regions: tuple[Region, ...], canvas: Canvas | None) -> Reroll | None:
    """The `reroll` section, or None when absent. A path given on the command line is not confined to the
    scene's folder (the image is usually in an output folder); one written in a scene file is."""
    if value is None:
        return None
    d = c.section(value, "reroll", KEYS)
    text = c.text(d, "from", "reroll.from", None)
    if not text:
        c.add("reroll.from", "missing", hint="the PNG whose other regions are kept, e.g. from: out/scene-7.png")
        return None
    path = path_field(c, text, base, "reroll.from", confine="reroll" not in c.overridden)
    if path is not None:
        check_picture(c, "reroll.from", path, canvas, lambda: load_rgb(path, canvas))
    names = d.get("regions")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        c.add("reroll.regions", f"expected a list of region names, got {describe(names)}", hint="e.g. regions: [sky]")
        return None
    known = [region.name for region in regions]
    for name in names:
        if name not in known:
            c.add("reroll.regions", f"no region is named {name!r}", hint="the regions: " + ", ".join(known))
    return Reroll(path, tuple(names)) if path is not None else None
