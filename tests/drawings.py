"""Layered drawings (.psd, .ora) built for tests: a layer spec is (name, image, left, top) with optional
visible=False; a group is ("group", name, [specs], visible). Specs are listed bottom first, as the layers lie.
Also crafted PNGs, chunk by chunk (`chunk`, `png`), for the readers that walk a PNG's chunks."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image


def blob(size, color=(255, 0, 0), alpha=255) -> Image.Image:
    return Image.new("RGBA", size, (*color, alpha))


def disc(size) -> Image.Image:
    """A soft-edged shape with alpha from 0 to 255."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2))
    alpha = np.clip((1.2 - r) * 255, 0, 255).astype(np.uint8)
    rgba = np.dstack([np.full((h, w), 30, np.uint8), np.full((h, w), 90, np.uint8), np.full((h, w), 200, np.uint8), alpha])
    return Image.fromarray(rgba, "RGBA")


def layer(name, image, left=0, top=0, visible=True):
    return ("layer", name, image, left, top, visible)


def group(name, children, visible=True):
    return ("group", name, children, visible)


def make_psd(path: Path, size, specs, mode="RGBA", depth=8) -> Path:
    from psd_tools import PSDImage
    from psd_tools.api.layers import PixelLayer

    psd = PSDImage.new(mode, size, depth=depth)

    def add(parent, items):
        for spec in items:
            if spec[0] == "group":
                _, name, children, visible = spec
                g = parent.create_group(name=name)
                add(g, children)
                g.visible = visible
            else:
                _, name, image, left, top, visible = spec
                pixel = PixelLayer.frompil(image, parent, name=name, left=left, top=top)
                pixel.visible = visible

    add(psd, specs)
    psd.save(path)
    return path


def make_ora(path: Path, size, specs, mimetype="image/openraster", files=None) -> Path:
    pngs: dict[str, bytes] = {}

    def xml(items):
        out = []
        for spec in reversed(items):  # stack.xml lists the top layer first
            visibility = "visible" if spec[-1] else "hidden"
            if spec[0] == "group":
                _, name, children, _ = spec
                out.append(f"<stack name={quoteattr(name)} visibility='{visibility}'>{xml(children)}</stack>")
            else:
                _, name, image, left, top, _ = spec
                src = f"data/layer{len(pngs)}.png"
                buffer = io.BytesIO()
                image.save(buffer, "PNG")
                pngs[src] = buffer.getvalue()
                out.append(
                    f"<layer name={quoteattr(name)} src='{src}' x='{left}' y='{top}' visibility='{visibility}' opacity='1.0'/>"
                )
        return "".join(out)

    stack = f"<?xml version='1.0' encoding='UTF-8'?><image version='0.0.5' w='{size[0]}' h='{size[1]}'><stack>{xml(specs)}</stack></image>"
    with zipfile.ZipFile(path, "w") as archive:
        if mimetype is not None:
            archive.writestr(zipfile.ZipInfo("mimetype"), mimetype, compress_type=zipfile.ZIP_STORED)
        archive.writestr("stack.xml", stack, compress_type=zipfile.ZIP_DEFLATED)
        for src, data in {**pngs, **(files or {})}.items():
            archive.writestr(src, data)
    return path


def make(kind: str, path: Path, size, specs, **kwargs) -> Path:
    return (make_psd if kind == "psd" else make_ora)(path.with_suffix("." + kind), size, specs, **kwargs)


KINDS = ["psd", "ora"]


def save_ora(path: Path, size, specs) -> Path:
    """Save as editors do (Krita, GIMP): write the whole archive to a temporary file, then rename it."""
    temporary = make_ora(path.with_name(f".{path.name}.part"), size, specs)
    os.replace(temporary, path)
    return path



def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(path: Path, *chunks: bytes, size=(8, 8)) -> Path:
    """A PNG of `size` (its IDAT holds a few bytes whatever the size claims) with `chunks` before IDAT."""
    header = struct.pack(">IIBBBBB", *size, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + b"".join(chunks)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 72)) + chunk(b"IEND", b""))
    return path
