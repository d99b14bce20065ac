"""Read layered drawings (.psd, .ora) into a flat, bottom-first list of visible layers clipped to the canvas.

Only pixels and geometry: what the layers mean (regions, background) is decided in `layers`. Files are
read through the bounded reader; an OpenRaster archive's declared sizes and each layer PNG's header are
checked before anything is inflated, and members are inflated with a cap. What the layers decode in all
is bounded (MAX_DRAWING_PIXELS) before any is decoded: plain PSD layers only on the canvas
(`psd_channels`), an OpenRaster member once however many layers share it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import struct
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import Problem, SceneError
from semanticdraw_cli.scene.psd_channels import croppable, cropped_rgba, merged_image_complete
from semanticdraw_cli.scene.safe_io import ORA, PSD, InputRefused, open_archive, open_file, read_bytes, read_zip_member

Box = tuple[int, int, int, int]  # left, top, right, bottom in canvas pixels (right/bottom exclusive)

ORA_MIMETYPE = "image/openraster"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PSD_MODES = {"RGB", "GRAYSCALE"}  # read as RGBA; grayscale is converted (gray copied to R, G and B)
PSD_DEPTHS = {8, 16}  # 16-bit channels are reduced to 8 bits, finer than masks need
PSD_COMPOSITE_WEIGHT = 6  # psd-tools composites in float: 1.5 GB for an 8000x8000 layer, ~6x its RGBA bytes


@dataclass(frozen=True)
class Layer:
    """One visible pixel layer, cut to the part that lies on the canvas."""

    name: str  # the layer's own name
    where: str  # group path for messages, e.g. "trees/oak"
    rgba: np.ndarray  # (h, w, 4) uint8: the layer inside `box`
    box: Box  # where `rgba` lies on the canvas

    def alpha_on_canvas(self, width: int, height: int) -> np.ndarray:
        """The layer's alpha placed at its offset on a canvas-size array, (H, W) float32 in [0, 1]."""
        out = np.zeros((height, width), np.float32)
        left, top, right, bottom = self.box
        out[top:bottom, left:right] = self.rgba[..., 3] / np.float32(255)
        return out

    def covers(self, width: int, height: int) -> bool:
        """Fully opaque over the whole canvas."""
        return self.box == (0, 0, width, height) and bool((self.rgba[..., 3] == 255).all())


@dataclass(frozen=True)
class Document:
    width: int
    height: int
    layers: tuple[Layer, ...]  # bottom first


@dataclass(frozen=True)
class _Entry:
    """A layer found in the file, before its pixels are decoded."""

    name: str
    where: str
    box: Box  # the layer's full extent on the canvas, possibly beyond it; empty for a layer without pixels
    read: Callable[[Box], "Image.Image | np.ndarray"]  # pixels of a canvas box inside `box`: RGBA, or any Pillow mode with alpha
    decodes: Callable[[Box], tuple[object, int]]  # (what is decoded, its pixels) to read a canvas box; counted once per what


def read_document(path: Path) -> Document:
    """Dispatch on the suffix; every problem with the file raises SceneError."""
    suffix = path.suffix.lower()
    if suffix == ".psd":
        return _read_psd(path)
    if suffix == ".ora":
        return _read_ora(path)
    raise SceneError([Problem(str(path), "", f"unknown layered file type {suffix!r}", hint="use .psd or .ora")])


def canvas_problems(file: str, width: int, height: int) -> list[Problem]:
    """The document size must be a canvas: a multiple of 8 within the size limits."""
    m = defaults.CANVAS_MULTIPLE
    if width <= 0 or height <= 0:
        return [Problem(file, "canvas", f"document size {width}x{height} is empty")]
    if max(width, height) > defaults.MAX_CANVAS_SIDE or width * height > defaults.MAX_CANVAS_PIXELS:
        limit = f"at most {defaults.MAX_CANVAS_SIDE} px a side and {defaults.MAX_CANVAS_PIXELS} px in all"
        return [Problem(file, "canvas", f"document size {width}x{height} is too large ({limit})")]
    if width % m or height % m:
        near = f"{max(m, round(width / m) * m)}x{max(m, round(height / m) * m)}"
        return [
            Problem(
                file, "canvas", f"document size {width}x{height} is not a multiple of {m}",
                hint=f"resize the canvas to {near}",
            )
        ]
    return []


def _decode(file: str, width: int, height: int, entries: list[_Entry]) -> Document:
    """Clip every layer to the canvas and decode its pixels; collect every problem before raising."""
    problems = canvas_problems(file, width, height)
    if len(entries) > defaults.MAX_REGIONS + 1:  # one may be the background
        problems.append(Problem(file, "", f"{len(entries)} visible layers; at most {defaults.MAX_REGIONS} regions are allowed"))
    if problems:
        raise SceneError(problems)
    _check_budget(file, width, height, entries)
    layers = []
    for entry in entries:
        try:
            layers.append(_decode_entry(file, width, height, entry))
        except SceneError as error:
            problems.extend(error.problems)
    if problems:
        raise SceneError(problems)
    if not layers:
        raise SceneError([Problem(file, "", "no visible layers", hint="draw one layer per region, named by its prompt")])
    return Document(width, height, tuple(layers))


def _check_budget(file: str, width: int, height: int, entries: list[_Entry]) -> None:
    """Refuse, before decoding anything, a drawing whose layers decode more than MAX_DRAWING_PIXELS in all.

    Each layer counts what its decoder expands (the rows on the canvas of a plain PSD layer, a whole PNG
    of an OpenRaster layer, six times a whole PSD layer psd-tools composites in float), a member several
    layers share once. The first layer past the limit is named.
    """
    counted, total, limit = set(), 0, defaults.MAX_DRAWING_PIXELS
    for entry in entries:
        clipped = _clip(entry.box, width, height)
        what, pixels = entry.decodes(clipped) if clipped is not None else (None, 0)
        if what is None or what in counted:  # off the canvas (refused later, naming it), or counted already
            continue
        counted.add(what)
        total += pixels
        if total > limit:
            raise SceneError([Problem(file, f"layer {entry.where!r}", f"brings the pixels decoded for this drawing to "
                                      f"{total:,}, over the limit of {limit:,}", hint="crop the layers to the canvas")])


def _clip(box: Box, width: int, height: int) -> Box | None:
    """The part of `box` on the canvas; None when none is (or the layer has no pixels)."""
    clipped = (max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height))
    return clipped if clipped[2] > clipped[0] and clipped[3] > clipped[1] else None


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _decode_entry(file: str, width: int, height: int, entry: _Entry) -> Layer:
    key = f"layer {entry.where!r}"
    left, top, right, bottom = entry.box
    if right <= left or bottom <= top:  # no pixels at all: an empty region
        return Layer(entry.name, entry.where, np.zeros((0, 0, 4), np.uint8), (0, 0, 0, 0))
    if (right - left) * (bottom - top) > defaults.MAX_MASK_IMAGE_PIXELS:  # decoders expand the whole layer
        size = f"{right - left}x{bottom - top}"
        raise SceneError([Problem(file, key, f"is {size} pixels, over the limit of {defaults.MAX_MASK_IMAGE_PIXELS:,}",
                                  hint="crop the layer to the canvas")])
    clipped = _clip(entry.box, width, height)
    if clipped is None:
        where = f"lies entirely outside the {width}x{height} canvas (x {left}..{right}, y {top}..{bottom})"
        raise SceneError([Problem(file, key, where, hint="move it onto the canvas or hide it")])
    try:
        pixels = entry.read(clipped)
        rgba = pixels if isinstance(pixels, np.ndarray) else np.asarray(pixels.convert("RGBA"), dtype=np.uint8)  # (h, w, 4)
    except (MemoryError, SceneError):
        raise
    except Exception as error:  # a corrupt file fails inside the decoder in many ways
        raise SceneError([Problem(file, key, f"cannot read its pixels ({type(error).__name__}: {error})")]) from None
    if rgba.shape[:2] != (clipped[3] - clipped[1], clipped[2] - clipped[0]):
        raise SceneError([Problem(file, key, f"decoded {rgba.shape[1]}x{rgba.shape[0]} pixels, not the layer's size")])
    return Layer(entry.name, entry.where, rgba, clipped)


# --- Photoshop ---------------------------------------------------------------------------------


def _read_psd(path: Path) -> Document:
    file = str(path)
    psd, record = _open_psd(path)
    if problems := canvas_problems(file, psd.width, psd.height):
        raise SceneError(problems)
    mode = getattr(psd.color_mode, "name", str(psd.color_mode))
    if mode not in PSD_MODES or psd.depth not in PSD_DEPTHS:
        raise SceneError([Problem(file, "", f"colour mode {mode} at {psd.depth} bits per channel is not supported",
                                  hint="convert the document to RGB, 8 bits per channel (Image > Mode in Photoshop)")])
    if not merged_image_complete(record):
        raise SceneError([Problem(file, "", "the file is truncated (its image data ends early)", hint="re-export it")])
    entries = list(_psd_entries(file, psd, "", (mode, psd.depth, record.header.version)))
    return _decode(file, psd.width, psd.height, entries)


def _open_psd(path: Path):
    """(PSDImage, its low-level record); a file the parser rejects is a problem, not a traceback."""
    from psd_tools import PSDImage
    from psd_tools.psd import PSD

    file = str(path)
    data = _read_bytes(path)
    try:
        record = PSD.read(io.BytesIO(data))
        psd = PSDImage(record)
    except MemoryError:
        raise
    except Exception as error:  # the parser reports corrupt files with assorted exceptions
        raise SceneError(
            [Problem(file, "", f"not a readable PSD file ({type(error).__name__}: {error})", hint="re-export it")]
        ) from None
    return psd, record


def _read_bytes(path: Path) -> bytes:
    try:
        return read_bytes(path, PSD)
    except InputRefused as error:
        raise SceneError([Problem(str(path), "", error.reason, hint=error.hint)]) from None


def _psd_entries(file: str, group, prefix: str, form: tuple[str, int, int], depth: int = 0):
    """Visible layers bottom first; a hidden group hides its children; clipped layers belong to their base."""
    for layer in group:
        if not layer.visible:
            continue
        name = clean_name(layer.name)
        where = f"{prefix}{name}"
        if layer.is_group():
            _check_depth(file, where, depth + 1)
            yield from _psd_entries(file, layer, where + "/", form, depth + 1)
        elif layer.kind != "adjustment" and not layer.clipping:
            box = tuple(layer.bbox)
            if croppable(layer, form[0], form[1]):  # only the rows on the canvas are decoded
                read = functools.partial(cropped_rgba, layer, mode=form[0], version=form[2])
                yield _Entry(name, where, box, read, lambda clipped, where=where: (where, _area(clipped)))
            else:  # psd-tools expands the whole layer, in float
                cost = PSD_COMPOSITE_WEIGHT * _area(box)
                yield _Entry(name, where, box, _psd_reader(layer), lambda _clipped, where=where, cost=cost: (where, cost))


def clean_name(name: str) -> str:
    """A layer name without control characters (Krita ends PSD layer names with NUL) or outer spaces."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]+", " ", name).strip()


def _check_depth(file: str, where: str, depth: int) -> None:
    if depth > defaults.MAX_LAYER_DEPTH:
        raise SceneError([Problem(file, f"layer {where[:60]!r}", f"groups nest more than {defaults.MAX_LAYER_DEPTH} deep",
                                  hint="flatten some groups")])


def _psd_reader(layer) -> Callable[[Box], Image.Image]:
    """Pixels with the layer mask and clipped layers applied, at full opacity and fill (viewing aids)."""

    def read(box: Box) -> Image.Image:
        from psd_tools.compression import PSDDecompressionWarning

        opacity, fill = layer.opacity, layer.fill_opacity
        layer.opacity = layer.fill_opacity = 255
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", PSDDecompressionWarning)  # a damaged channel is a problem
                image = layer.composite(viewport=box)
        finally:
            layer.opacity, layer.fill_opacity = opacity, fill
        if image is None:
            return Image.new("RGBA", (box[2] - box[0], box[3] - box[1]))
        return image

    return read


# --- OpenRaster --------------------------------------------------------------------------------


def _read_ora(path: Path) -> Document:
    file = str(path)
    try:
        with open_file(path, ORA) as handle, open_archive(handle, file) as archive:
            root = _ora_stack(file, archive)
            width, height = _ora_size(file, root)
            stack = root.find("stack")
            if stack is None:
                raise SceneError([Problem(file, "stack.xml", "no <stack> element")])
            entries = list(_ora_entries(file, archive, stack, "", 0, 0, {}))
            return _decode(file, width, height, entries)
    except InputRefused as error:
        reason = "not an OpenRaster file (not a zip archive)" if error.reason == "not a zip archive" else error.reason
        raise SceneError([Problem(file, "", reason, hint=error.hint)]) from None


def _ora_stack(file: str, archive: zipfile.ZipFile) -> ET.Element:
    names = set(archive.namelist())
    if "mimetype" in names:
        head = _member(file, archive, "mimetype", "mimetype", head=64)  # a huge member is not the mimetype
        mimetype = head.decode("ascii", "replace").strip()
        if mimetype != ORA_MIMETYPE:
            raise SceneError([Problem(file, "mimetype", f"is {mimetype[:40]!r}, not {ORA_MIMETYPE!r}", hint="export as OpenRaster (.ora)")])
    if "stack.xml" not in names:
        raise SceneError([Problem(file, "", "not an OpenRaster file (no stack.xml inside)", hint="re-export it")])
    data = _member(file, archive, "stack.xml", "stack.xml", defaults.MAX_STACK_XML_BYTES)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        raise SceneError([Problem(file, "stack.xml", f"cannot be read ({error})")]) from None
    if root.tag != "image":
        raise SceneError([Problem(file, "stack.xml", f"root element is <{root.tag}>, expected <image>")])
    return root


def _member(file: str, archive: zipfile.ZipFile, name: str, key: str, limit: int = 0, head: int | None = None) -> bytes:
    """`read_zip_member`, its refusal a problem of `key` in the drawing."""
    try:
        return read_zip_member(archive, name, limit, head)
    except InputRefused as error:
        raise SceneError([Problem(file, key, str(error), hint=error.hint)]) from None


def _ora_size(file: str, root: ET.Element) -> tuple[int, int]:
    try:
        return int(root.get("w", "")), int(root.get("h", ""))
    except ValueError:
        raise SceneError([Problem(file, "stack.xml", "<image> needs integer w and h attributes")]) from None


def _ora_entries(file: str, archive: zipfile.ZipFile, stack: ET.Element, prefix: str, dx: int, dy: int,
                 decoded: dict[str, Image.Image], depth: int = 0):
    """stack.xml lists the top layer first: walk children in reverse for bottom first. `decoded` holds
    each member's pixels once, however many layers name it."""
    for element in reversed(list(stack)):
        if element.tag not in ("layer", "stack") or element.get("visibility", "visible") == "hidden":
            continue
        name = clean_name(element.get("name", ""))
        x, y = dx + _ora_int(file, element, "x"), dy + _ora_int(file, element, "y")
        if element.tag == "stack":
            _check_depth(file, f"{prefix}{name}", depth + 1)
            yield from _ora_entries(file, archive, element, f"{prefix}{name}/", x, y, decoded, depth + 1)
        else:
            yield _ora_entry(file, archive, element, name, f"{prefix}{name}", x, y, decoded)


def _ora_int(file: str, element: ET.Element, attribute: str) -> int:
    """A layer offset in pixels: a finite number within ±MAX_LAYER_OFFSET (`x="inf"` and `1e400` are not)."""
    text = element.get(attribute, "0")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > defaults.MAX_LAYER_OFFSET:
        name = clean_name(element.get("name", ""))
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise SceneError([Problem(file, f"layer {name!r}", f"{attribute}={shown!r} is not a number of pixels within "
                                  f"±{defaults.MAX_LAYER_OFFSET:,}", hint="re-export the drawing")])
    return int(value)


def _ora_entry(file: str, archive: zipfile.ZipFile, element: ET.Element, name: str, where: str, x: int, y: int,
               decoded: dict[str, Image.Image]) -> _Entry:
    """The layer's size from its PNG header, read without inflating the rest; pixels are read when decoded."""
    key = f"layer {where!r}"
    src = element.get("src", "")
    if not src.lower().endswith(".png"):
        raise SceneError([Problem(file, key, f"source {src!r} is not a PNG", hint="export raster layers")])
    head = _member(file, archive, src, key, defaults.MAX_PICTURE_BYTES, head=24)
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise SceneError([Problem(file, key, f"{src} is not a readable PNG (no PNG header)", hint="re-export it")])
    size = struct.unpack(">II", head[16:24])
    if size[0] * size[1] > defaults.MAX_MASK_IMAGE_PIXELS:
        raise SceneError([Problem(file, key, f"{src} is {size[0]}x{size[1]}, too large (over "
                                  f"{defaults.MAX_MASK_IMAGE_PIXELS:,} pixels)", hint="crop the layer to the canvas")])

    def read(box: Box) -> Image.Image:
        if src not in decoded:
            with _quiet_size_check():
                image = Image.open(io.BytesIO(_member(file, archive, src, key, defaults.MAX_PICTURE_BYTES)))
                if image.size != size:
                    raise ValueError(f"the PNG is {image.size[0]}x{image.size[1]}, its header said {size[0]}x{size[1]}")
                image.load()
            decoded[src] = image
        return decoded[src].crop((box[0] - x, box[1] - y, box[2] - x, box[3] - y)).convert("RGBA")

    return _Entry(name, where, (x, y, x + size[0], y + size[1]), read, lambda _box: (src, size[0] * size[1]))


@contextlib.contextmanager
def _quiet_size_check():
    """Pillow warns of pictures over 89 Mpx; layer sizes are checked against our own limit instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield
