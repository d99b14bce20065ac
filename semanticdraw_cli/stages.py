"""The prepare stages of a render, each cached by exactly what it reads.

A region's mask is keyed by its mask source and the canvas (and the file's bytes when it names a
file), a prompt encoding by the model and the text, the plan by the quantized masks, a background
picture by its bytes, a ControlNet's source by the model, the ControlNet and the picture. Re-preparing
an edited scene therefore recomputes only what the edit touched: a new prompt text is encoded, an edited
mask PNG is rasterized, and nothing else. `StageCache` records what each prepare recomputed, for the
report and for `watch`'s status line.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semanticdraw_cli import masks as mask_math
from semanticdraw_cli.lazy import lazy_module
from semanticdraw_cli.scene.composition import wrap_axes
from semanticdraw_cli.scene.types import Mask, Scene
from semanticdraw_cli.variants import plain

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.families.base import FamilyAdapter
    from semanticdraw_cli.families.base import Embeddings
else:
    torch = lazy_module("torch")

CACHE_BYTES = 2 << 30  # what a renderer keeps between prepares; the oldest entries go first


@dataclass
class StageCache:
    """Stage results keyed by their inputs, least recently used dropped beyond `limit` bytes."""

    limit: int = CACHE_BYTES
    recomputed: dict[str, list[Hashable]] = field(default_factory=dict)  # since the last `start()`
    _entries: OrderedDict = field(default_factory=OrderedDict)
    _sizes: dict = field(default_factory=dict)

    def start(self) -> None:
        """Begin a prepare: forget what the last one recomputed."""
        self.recomputed = {}

    def has(self, stage: str, key: Hashable) -> bool:
        return (stage, key) in self._entries

    def get(self, stage: str, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value, or `compute()` stored and recorded as recomputed."""
        entry = (stage, key)
        if entry in self._entries:
            self._entries.move_to_end(entry)
            return self._entries[entry]
        value = compute()
        self.put(stage, key, value)
        return value

    def put(self, stage: str, key: Hashable, value: Any) -> None:
        entry = (stage, key)
        self.recomputed.setdefault(stage, []).append(key)
        self._entries[entry], self._sizes[entry] = value, _size(value)
        while sum(self._sizes.values()) > self.limit and len(self._entries) > 1:
            oldest, _ = self._entries.popitem(last=False)
            del self._sizes[oldest]


def _size(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_size(v) for v in value)
    if isinstance(value, dict):
        return sum(_size(v) for v in value.values())
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a tensor
        return value.element_size() * value.nelement()
    return 64


def file_digest(path: Path) -> str:
    """A file's content hash: the cache key of everything read from it."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def array_digest(array: np.ndarray) -> tuple:
    """Shape, dtype and content hash of an array: a cache key for what is computed from it."""
    array = np.ascontiguousarray(array)
    return array.shape, str(array.dtype), hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


def mask_key(mask: Mask) -> Hashable:
    """What a region's rasterized mask depends on besides the canvas."""
    if mask.kind in ("image", "label_map"):
        content = file_digest(mask.path) if mask.path is not None and mask.path.is_file() else None
        return mask.kind, str(mask.path), mask.color, content
    if mask.kind == "array":
        return "array", array_digest(mask.array)
    return mask.kind, mask.coords, mask.fractional


def canvas_masks(scene: Scene, cache: StageCache) -> np.ndarray:
    """Rasterized, z-ordered, blurred, strength-scaled masks (R, H, W); each region rasterized once per content."""
    from semanticdraw_cli.scene.rasterize import rasterize_mask

    raw = np.stack([
        cache.get("mask", (mask_key(region.mask), scene.canvas), lambda region=region: rasterize_mask(region.mask, scene.canvas))
        for region in scene.regions
    ])
    return mask_math.prepare_masks(
        raw,
        [region.blur for region in scene.regions],
        [region.strength for region in scene.regions],
        scene.sampler.cover_alpha,
        wrap_axes(scene.canvas.wrap),
    )


def background_pixels(scene: Scene, cache: StageCache) -> np.ndarray | None:
    """The picture to paint over at canvas size, (H, W, 3) uint8; None when there is none."""
    from semanticdraw_cli.scene.rasterize import load_rgb

    if scene.background.image_array is not None:
        return scene.background.image_array
    if scene.background.image is None:
        return None
    path = scene.background.image
    key = (str(path), file_digest(path) if path.is_file() else None, scene.canvas)
    return cache.get("background", key, lambda: load_rgb(path, scene.canvas))


def region_texts(scene: Scene) -> tuple[list[str], list[str], list[float]]:
    """(prompts, negatives, prompt strengths) per region; with a background prompt it is region 0."""
    prompts = [plain(region.prompt) for region in scene.regions]
    negatives = [region.negative for region in scene.regions]
    strengths = [region.prompt_strength for region in scene.regions]
    if scene.background.prompt is not None:
        prompts = [plain(scene.background.prompt), *prompts]
        negatives = [scene.background.negative, *negatives]
        strengths = [1.0, *strengths]
    return prompts, negatives, strengths


def encode_texts(adapter: FamilyAdapter, texts: Sequence[str], cache: StageCache, model_key: Hashable) -> dict:
    """text -> its embedding rows; texts not seen before with this model are encoded together, in sorted order."""
    rows = {text: cache.get("text", (model_key, text), lambda: None) for text in set(texts) if cache.has("text", (model_key, text))}
    missing = sorted(set(texts) - set(rows))
    if missing:
        encoded = adapter.encode_text(missing)
        for i, text in enumerate(missing):
            rows[text] = {key: value[i] for key, value in encoded.items()}
            cache.put("text", (model_key, text), rows[text])
    return rows


def region_embeddings(scene: Scene, rows: dict[str, dict], region_text: list[str], strengths: list[float]) -> Embeddings:
    """(R, ...) embeddings of the regions' texts; with a background prompt each is lerped from row 0 by its strength."""
    table = {key: torch.stack([rows[text][key] for text in region_text]).float() for key in rows[region_text[0]]}
    if scene.background.prompt is None:
        return table
    lerped = {}
    for key, value in table.items():
        weight = torch.tensor(strengths, device=value.device).view(-1, *[1] * (value.dim() - 1))
        lerped[key] = torch.lerp(value[:1], value, weight)  # row 0 is the background prompt
    return lerped


def reference_embeddings(scene: Scene, adapter: FamilyAdapter, cache: StageCache, model_key: Hashable) -> tuple | None:
    """(cond, uncond) per-region keys of the regions' reference pictures (a background prompt's row first, without
    one): each picture's embedding and its weight; a region without a reference gets the blank embedding at
    weight 0. None when no region has one. A picture is encoded once per model and adapter, keyed by its bytes."""
    from semanticdraw_cli.families import ip_adapter

    refs = [None] * (scene.background.prompt is not None) + [region.reference for region in scene.regions]
    present = [ref for ref in refs if ref is not None]
    if not present:
        return None
    ip_adapter.attach(adapter, present[0].adapter)
    encoded = {
        ref.image: cache.get("reference", (model_key, ref.adapter, str(ref.image), file_digest(ref.image)),
                             lambda ref=ref: ip_adapter.encode_reference(adapter, reference_pixels(ref.image)))
        for ref in present
    }
    blank = adapter.ip_blank[0]
    weights = torch.tensor([ref.weight if ref is not None else 0.0 for ref in refs], device=adapter.device)
    halves = []
    for half in (0, 1):  # the picture's embedding, the unconditional one
        rows = [encoded[ref.image][half][0] if ref is not None else blank for ref in refs]
        halves.append({ip_adapter.IMAGE_KEY: torch.stack(rows), ip_adapter.WEIGHT_KEY: weights})
    return tuple(halves)


def reference_pixels(path: Path) -> np.ndarray:
    """A reference picture as (H, W, 3) uint8 at its own size (the image encoder resizes it), read within the
    picture byte limit."""
    import io

    from PIL import Image

    from semanticdraw_cli.scene.safe_io import PICTURE, read_bytes

    with Image.open(io.BytesIO(read_bytes(path, PICTURE))) as picture:
        return np.asarray(picture.convert("RGB"))


def control_pixels(scene: Scene, entry, cache: StageCache) -> np.ndarray:
    """A control picture at canvas size, (H, W, 3) uint8, cached by its bytes (or a layer's pixels)."""
    from semanticdraw_cli.scene.rasterize import load_rgb

    if entry.image_array is not None:
        return entry.image_array
    key = control_picture_key(scene, entry)
    return cache.get("control", key, lambda: load_rgb(entry.image, scene.canvas, "control picture"))


def control_picture_key(scene: Scene, entry) -> Hashable:
    """What a control picture at canvas size is read from: its file's bytes, or a layer's pixels, and the canvas."""
    if entry.image_array is not None:
        return array_digest(entry.image_array), scene.canvas
    return str(entry.image), file_digest(entry.image) if entry.image.is_file() else None, scene.canvas


def control_sources(scene: Scene, entries: Sequence, adapter: FamilyAdapter, cache: StageCache,
                    model_key: Hashable) -> list[tuple[Any, int]]:
    """Each entry's `adapter.control_source` (tensor, factor), computed once per model, ControlNet and picture
    content: for sd3 and flux it is a VAE encode of the whole canvas, which a prompt edit in `watch` must not
    repeat. The model key names the adapter (and so its VAE and device), the reference its ControlNet, whose
    config may change the source (sd3's shift)."""
    sources = []
    for entry in entries:
        key = (model_key, entry.model, control_picture_key(scene, entry))
        sources.append(cache.get("control_source", key, lambda entry=entry: adapter.control_source(
            entry.model, control_pixels(scene, entry, cache))))
    return sources


def control_setup(scene: Scene, adapter: FamilyAdapter, cache: StageCache, steps: int,
                  model_key: Hashable) -> Any:
    """The sampler's `control.ControlSetup`: whole-canvas entries for every region row, a region's own for its row;
    each ControlNet loaded once per adapter, each picture turned once per model, ControlNet and content into what
    its crops are cut from (the family's `control_source`: the picture, or its latent). None when no entry acts
    (weight 0 is no control)."""
    from semanticdraw_cli.control import ControlSetup, active_steps

    shared = [e for e in scene.control if e.weight > 0]
    own = [[e for e in region.control if e.weight > 0] for region in scene.regions]
    entries = shared + [e for row in own for e in row]
    if not entries:
        return None
    for reference in dict.fromkeys(e.model for e in entries):
        adapter.controlnet(reference)
    device = adapter.device
    sources = control_sources(scene, entries, adapter, cache, model_key)  # (tensor, factor) per entry
    rows, first = [], len(shared)
    for row in own:
        rows.append(tuple(range(len(shared))) + tuple(range(first, first + len(row))))
        first += len(row)
    if scene.background.prompt is not None:
        rows.insert(0, tuple(range(len(shared))))
    return ControlSetup(
        models=tuple(e.model for e in entries),
        # one entry: its cached source itself (a view), not a copy of it beside the cache's
        pictures=sources[0][0].unsqueeze(0) if len(sources) == 1 else torch.stack([source for source, _ in sources]),
        weights=torch.tensor([e.weight for e in entries], dtype=torch.float32, device=device),
        steps=tuple(active_steps(e.start, e.end, steps) for e in entries),
        rows=tuple(rows),
        factor=sources[0][1],  # one family: every source has the same
    )
