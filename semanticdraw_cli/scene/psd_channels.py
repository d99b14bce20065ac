"""A PSD layer's pixels decoded only where they lie on the canvas, and the check of a PSD's last section.

psd-tools' compositing expands a whole layer to floating point before it crops, so a small file whose
layers reach far beyond the canvas takes gigabytes. A plain 8-bit pixel layer (no mask, no clipped
layers, no effects) stored raw or run-length encoded, as Photoshop and Krita save them, is read here
row by row: only the rows inside the canvas are decoded, then cut to its columns. Anything else goes
through psd-tools (`layered_files`), its whole extent counted against the drawing's pixel budget.
"""

from __future__ import annotations

import zlib

import numpy as np

Box = tuple[int, int, int, int]  # left, top, right, bottom in canvas pixels (right/bottom exclusive)

COLOUR_CHANNELS = {"RGB": (0, 1, 2), "GRAYSCALE": (0, 0, 0)}  # grayscale: gray copied to R, G and B
ALPHA = -1  # the transparency channel's id


def croppable(layer, mode: str, depth: int) -> bool:
    """Whether `cropped_rgba` reads this layer: plain pixels, 8 bits, raw or RLE channels, nothing to composite."""
    from psd_tools.constants import Compression

    if layer.kind != "pixel" or depth != 8 or mode not in COLOUR_CHANNELS:
        return False
    if layer.has_mask() or layer.has_vector_mask() or layer.has_clip_layers() or layer.has_effects():
        return False
    ids = {info.id for info in layer._record.channel_info}
    if not set(COLOUR_CHANNELS[mode]) <= ids:
        return False
    return all(data.compression in (Compression.RAW, Compression.RLE) for data in layer._channels)


def cropped_rgba(layer, box: Box, mode: str, version: int) -> np.ndarray:
    """(h, w, 4) uint8 of a `croppable` layer inside the canvas `box`, decoding only the rows in it."""
    record = layer._record
    width = record.right - record.left
    rows = (box[1] - record.top, box[3] - record.top)
    cols = slice(box[0] - record.left, box[2] - record.left)
    channels = {info.id: data for info, data in zip(record.channel_info, layer._channels)}
    out = np.full((rows[1] - rows[0], box[2] - box[0], 4), 255, np.uint8)
    for index, channel in enumerate(COLOUR_CHANNELS[mode]):
        out[..., index] = _rows(channels[channel], width, record.bottom - record.top, rows, version)[:, cols]
    if ALPHA in channels:
        out[..., 3] = _rows(channels[ALPHA], width, record.bottom - record.top, rows, version)[:, cols]
    return out


def _rows(channel, width: int, height: int, rows: tuple[int, int], version: int) -> np.ndarray:
    """Rows [start, stop) of one 8-bit channel, (stop - start, width) uint8; ValueError when its data is cut short."""
    from psd_tools.compression import rle_impl
    from psd_tools.constants import Compression

    start, stop = rows
    data = channel.data
    if channel.compression == Compression.RAW:
        if len(data) < height * width:
            raise ValueError(f"a channel holds {len(data):,} bytes of the {height * width:,} its size needs")
        return np.frombuffer(data[start * width: stop * width], np.uint8).reshape(stop - start, width)
    size = 2 if version == 1 else 4
    if len(data) < height * size:
        raise ValueError("a channel's row lengths are cut short")
    counts = np.frombuffer(data[: height * size], ">u2" if size == 2 else ">u4")
    offsets = height * size + np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    if offsets[-1] > len(data):
        raise ValueError(f"a channel's rows need {int(offsets[-1]):,} bytes; it holds {len(data):,}")
    decoded = [rle_impl.decode(data[offsets[row]: offsets[row + 1]], width) for row in range(start, stop)]
    return np.frombuffer(b"".join(decoded), np.uint8).reshape(stop - start, width)


def merged_image_complete(record) -> bool:
    """The last section runs to the end of the file, so the parser cannot see it cut short: check its size."""
    from psd_tools.constants import Compression

    header, image = record.header, record.image_data
    rows = header.height * header.channels
    if image.compression == Compression.RAW:
        return len(image.data) >= rows * ((header.width * header.depth + 7) // 8)
    if image.compression == Compression.RLE:
        size = 2 if header.version == 1 else 4
        if len(image.data) < rows * size:
            return False
        counts = np.frombuffer(image.data[: rows * size], dtype=">u2" if size == 2 else ">u4")
        return len(image.data) >= rows * size + int(counts.sum(dtype=np.int64))
    try:
        inflate = zlib.decompressobj()  # ZIP: the stream must reach its end
        chunk = inflate.decompress(image.data, 1 << 24)
        while chunk and not inflate.eof:
            chunk = inflate.decompress(inflate.unconsumed_tail, 1 << 24)
        return inflate.eof
    except zlib.error:
        return False
