"""What `render` embedded in a PNG, read back for `inspect` without decoding a single pixel.

The file goes through the bounded reader (a regular file of at most MAX_PICTURE_BYTES); chunks are
walked by their headers and only the wanted text chunks are read, each at most MAX_EMBEDDED_TEXT_BYTES
(inflated with a cap when compressed) and CRC-checked. A header claiming more pixels than any canvas
is refused, and so is a PNG of more than MAX_PNG_CHUNKS chunks (megabytes of empty chunks would keep
any reader busy for minutes). `check_picture` applies the same checks before `score` decodes a picture. The scene must be YAML of a mapping (read by the one YAML reader) and the params a JSON
object; anything else is a SceneError naming the file and the chunk.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Any, BinaryIO

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import Problem, SceneError
from semanticdraw_cli.scene.safe_io import PICTURE, InputRefused, open_file

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
MAX_KEYWORD = 79  # PNG keywords are 1-79 Latin-1 characters


def read_embedded(path: Path, scene_key: str, params_key: str) -> tuple[str, dict[str, Any]]:
    """(scene YAML, params) of a rendered PNG; KeyError when it holds no scene; SceneError when refused."""
    from semanticdraw_cli.scene.yaml_text import parse_yaml

    file = str(path)
    try:
        texts = read_text_chunks(Path(path), (scene_key, params_key))
    except InputRefused as error:
        raise SceneError([Problem(file, "", error.reason, hint=error.hint)]) from None
    scene = texts[scene_key]
    data, _, problems = parse_yaml(scene, file)
    if problems:
        raise SceneError([Problem(file, f"{scene_key} {p.key}".strip(), p.message, p.line, p.hint) for p in problems])
    if not isinstance(data, dict):
        raise SceneError([Problem(file, scene_key, f"expected a scene mapping, got {type(data).__name__}")])
    return scene, _params(file, params_key, texts.get(params_key, "{}"))


def _params(file: str, key: str, text: str) -> dict[str, Any]:
    try:
        params = json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, a number too long, nesting too deep
        reason = str(error) if len(str(error)) <= 80 else type(error).__name__
        raise SceneError([Problem(file, key, f"not valid JSON ({reason})")]) from None
    if not isinstance(params, dict):
        raise SceneError([Problem(file, key, f"expected a JSON object, got {type(params).__name__}")])
    return params


def read_text_chunks(path: Path, keys: Collection[str]) -> dict[str, str]:
    """The text of the tEXt/zTXt/iTXt chunks named `keys` (the first of each); InputRefused for a bad file."""
    found: dict[str, str] = {}
    with open_file(path, PICTURE) as handle:
        if handle.read(8) != SIGNATURE:
            raise InputRefused(path, "not a PNG file", hint="inspect reads PNGs written by semanticdraw render")
        kind, length = _next_chunk(path, handle)
        if kind != b"IHDR" or length != 13:
            raise InputRefused(path, "not a readable PNG (no IHDR chunk first)", hint="the file is damaged")
        _check_size(path, _data(path, handle, kind, length))
        chunks = 1
        while len(found) < len(keys):
            kind, length = _next_chunk(path, handle)
            chunks = _count_chunk(path, chunks)
            if kind == b"IEND":
                break
            keyword = _keyword(handle, length) if kind in TEXT_CHUNKS else None
            if keyword in keys and keyword not in found:
                found[keyword] = _text(path, handle, kind, keyword, length)
            else:
                handle.seek(length + 4, 1)  # the data and the CRC
    return found


def check_picture(path: Path) -> None:
    """Refuse a picture before decoding: a header over the canvas limits, or a PNG of too many chunks.

    A PNG's chunks are walked by their headers to IEND (nothing is read but the IHDR); another format's
    size comes from Pillow's header read.
    """
    with open_file(path, PICTURE) as handle:
        if handle.read(8) != SIGNATURE:
            handle.seek(0)
            _check_size(path, struct.pack(">II", *_pillow_size(path, handle)))
            return
        kind, length = _next_chunk(path, handle)
        if kind != b"IHDR" or length != 13:
            raise InputRefused(path, "not a readable PNG (no IHDR chunk first)", hint="the file is damaged")
        _check_size(path, _data(path, handle, kind, length))
        chunks = 1
        while kind != b"IEND":
            kind, length = _next_chunk(path, handle)
            chunks = _count_chunk(path, chunks)
            handle.seek(length + 4, 1)


def _pillow_size(path: Path, handle: BinaryIO) -> tuple[int, int]:
    """(width, height) from the header Pillow reads when it opens a picture; no pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(handle) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputRefused(path, f"not a picture Pillow can read ({type(error).__name__})",
                           hint="pass a PNG or JPEG") from None


def _count_chunk(path: Path, chunks: int) -> int:
    """`chunks` + 1, refused past MAX_PNG_CHUNKS."""
    if chunks >= defaults.MAX_PNG_CHUNKS:
        raise InputRefused(path, f"holds more than {defaults.MAX_PNG_CHUNKS:,} PNG chunks; at most that many are read",
                           hint="this is not a PNG written by semanticdraw render; re-save it")
    return chunks + 1


def _next_chunk(path: Path, handle: BinaryIO) -> tuple[bytes, int]:
    """(type, data length) of the next chunk, the file left at its data."""
    head = handle.read(8)
    if len(head) < 8:
        raise InputRefused(path, "the PNG is cut short (no IEND chunk)", hint="the file is damaged")
    length, kind = struct.unpack(">I4s", head)
    return kind, length


def _keyword(handle: BinaryIO, length: int) -> str:
    """A text chunk's keyword, read from its first bytes; the file is left where it was."""
    start = handle.tell()
    keyword = handle.read(min(length, MAX_KEYWORD + 1)).partition(b"\0")[0]
    handle.seek(start)
    return keyword.decode("latin-1")


def _text(path: Path, handle: BinaryIO, kind: bytes, keyword: str, length: int) -> str:
    """One text chunk's text, the file positioned at its data; at most MAX_EMBEDDED_TEXT_BYTES."""
    limit = defaults.MAX_EMBEDDED_TEXT_BYTES
    if length > limit + MAX_KEYWORD + 5:  # keyword, separators and flags come on top of the text
        raise InputRefused(path, f"its {keyword} text chunk is {length:,} bytes; at most {limit:,} are read",
                           hint="this is not a PNG written by semanticdraw render")
    body = _data(path, handle, kind, length)[len(keyword) + 1:]
    try:
        if kind == b"tEXt":
            return body.decode("latin-1")
        if kind == b"zTXt":
            return _inflate(path, keyword, body[1:]).decode("latin-1")
        compressed, text = body[0], body[2:].split(b"\0", 2)[2]  # after the language tag and translated keyword
        return (_inflate(path, keyword, text) if compressed else text).decode("utf-8")
    except (IndexError, UnicodeDecodeError) as error:
        raise InputRefused(path, f"its {keyword} text chunk is malformed ({type(error).__name__})") from None


def _data(path: Path, handle: BinaryIO, kind: bytes, length: int) -> bytes:
    data = handle.read(length)
    crc = handle.read(4)
    if len(data) < length or len(crc) < 4:
        raise InputRefused(path, "the PNG is cut short", hint="the file is damaged")
    if struct.unpack(">I", crc)[0] != zlib.crc32(kind + data):
        raise InputRefused(path, f"its {kind.decode('latin-1')} chunk is damaged (bad CRC)")
    return data


def _inflate(path: Path, keyword: str, data: bytes) -> bytes:
    limit = defaults.MAX_EMBEDDED_TEXT_BYTES
    try:
        inflate = zlib.decompressobj()
        out = inflate.decompress(data, limit + 1)
    except zlib.error as error:
        raise InputRefused(path, f"its {keyword} text chunk cannot be inflated ({error})") from None
    if len(out) > limit:
        raise InputRefused(path, f"its {keyword} text chunk inflates to more than {limit:,} bytes")
    return out


def _check_size(path: Path, header: bytes) -> None:
    width, height = struct.unpack(">II", header[:8])
    if width * height > defaults.MAX_CANVAS_PIXELS or max(width, height) > defaults.MAX_CANVAS_SIDE:
        raise InputRefused(path, f"its header claims {width}×{height} = {width * height:,} pixels; images rendered "
                                 f"by semanticdraw have at most {defaults.MAX_CANVAS_SIDE:,} a side and "
                                 f"{defaults.MAX_CANVAS_PIXELS:,} in all")
