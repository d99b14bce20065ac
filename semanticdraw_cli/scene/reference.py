"""A region's `reference: {image, weight, adapter}` (an image prompt through an IP-Adapter), as checks.

Everything checkable without loading a model is checked here, so a bad reference exits 2 before any
model loads: the picture, the weight, the adapter file and its `image_encoder/` folder, one adapter per
scene, a family that takes reference pictures, and, where the checkpoint's UNet config can be read
(a local folder or a built preset), that the adapter was made for a UNet of its cross-attention width.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path

from semanticdraw_cli import defaults as D
from semanticdraw_cli.families import registry
from semanticdraw_cli.families.ip_adapter import IMAGE_ENCODER_FOLDER
from semanticdraw_cli.scene.checks import Checker, describe
from semanticdraw_cli.scene.safe_io import PICTURE, InputRefused, check_file
from semanticdraw_cli.scene.sources import path_field
from semanticdraw_cli.scene.types import Model, Reference, Region

KEYS = ("image", "weight", "adapter")
HUB_FILE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/[A-Za-z0-9_.-]+\.(safetensors|bin)")
ADAPTER_HINT = "an IP-Adapter weights file with its image_encoder/ folder beside it, or owner/repo/path/file.safetensors"
MAX_HEADER_BYTES = 100 << 20  # a safetensors header past this is no IP-Adapter's


def reference_field(c: Checker, value: object, key: str, base: Path) -> Reference | None:
    """The Reference of `regions[i].reference`; None when absent or refused (with problems added)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        c.add(key, f"expected a mapping {{image: ..., weight: {D.REFERENCE_WEIGHT}, adapter: ...}}, "
                   f"got {describe(value)}")
        return None
    d = c.section(value, key, KEYS)
    image, adapter = c.text(d, "image", f"{key}.image", None), c.text(d, "adapter", f"{key}.adapter", None)
    weight = c.number(d, "weight", f"{key}.weight", D.REFERENCE_WEIGHT, lo=0, hi=D.MAX_REFERENCE_WEIGHT)
    if not image:
        c.add(f"{key}.image", "missing", hint="the reference picture, a path relative to the scene file")
    if not adapter:
        c.add(f"{key}.adapter", "missing", hint=ADAPTER_HINT)
    path = path_field(c, image, base, f"{key}.image") if image else None
    if path is not None:
        try:
            check_file(path, PICTURE)
        except InputRefused as error:
            c.add(f"{key}.image", f"file not found: {path}" if error.missing else str(error), error.hint)
    adapter = _adapter(c, adapter, base, f"{key}.adapter") if adapter else None
    return Reference(path, weight, adapter) if path is not None and adapter is not None else None


def _adapter(c: Checker, text: str, base: Path, key: str) -> str | None:
    """A local adapter file made absolute (checked: a weights file, IP-Adapter keys, its image encoder), or a
    hub file reference kept as it is (fetched when the model loads)."""
    local = path_field(c, text, base, key, confine=False)
    if local is None:
        return None
    if not local.exists():
        if HUB_FILE.fullmatch(text) and not text.startswith((".", "/", "~")):
            return text
        c.add(key, f"file not found: {local}", hint=ADAPTER_HINT)
        return None
    if not local.is_file() or not local.name.endswith((".safetensors", ".bin")):
        c.add(key, f"{local} is not a .safetensors or .bin weights file", hint=ADAPTER_HINT)
        return None
    if not (local.parent / IMAGE_ENCODER_FOLDER / "config.json").is_file():
        c.add(key, f"no image encoder beside {local.name}: {local.parent / IMAGE_ENCODER_FOLDER} has no config.json",
              hint="put the adapter's CLIP image encoder there (a CLIPVisionModelWithProjection folder)")
        return None
    if local.name.endswith(".safetensors") and adapter_width(local) is None:
        c.add(key, f"{local} holds no IP-Adapter weights (no image_proj.* and ip_adapter.* tensors)", hint=ADAPTER_HINT)
        return None
    return str(local)


def adapter_width(path: Path) -> int | None:
    """The cross-attention width an IP-Adapter .safetensors file was made for, read from its header alone;
    None when the file is no IP-Adapter."""
    try:
        with open(path, "rb") as file:
            (size,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(size)) if size <= MAX_HEADER_BYTES else {}
    except (OSError, ValueError, struct.error):
        return None
    first = header.get("ip_adapter.1.to_k_ip.weight", {})
    if not any(name.startswith("image_proj.") for name in header) or len(first.get("shape", ())) != 2:
        return None
    return int(first["shape"][1])


def check_references(c: Checker, regions: Sequence[Region], model: Model) -> None:
    """What the regions' references ask of the model: a family that takes them, one adapter, its width."""
    keyed = [(f"regions[{i}].reference", r.reference) for i, r in enumerate(regions) if r.reference is not None]
    if not keyed:
        return
    if not registry.family(model.family).reference_pictures:
        having = " and ".join(name for name, spec in registry.families().items() if spec.reference_pictures)
        c.add(keyed[0][0], f"the {model.family} family takes no reference pictures",
              hint=f"IP-Adapters work with {having}")
        return
    adapters = sorted({reference.adapter for _, reference in keyed})
    if len(adapters) > 1:
        c.add(keyed[0][0], f"{len(adapters)} different adapters ({', '.join(adapters)}); a scene uses one",
              hint="give every reference the same adapter")
        return
    width, wanted = _local_width(adapters[0]), unet_width(model)
    if width is not None and wanted is not None and width != wanted:
        c.add(f"{keyed[0][0]}.adapter", f"{adapters[0]} is an IP-Adapter for a UNet of cross-attention width {width}; "
              f"model.checkpoint ({model.family}) has width {wanted}", hint=f"use an IP-Adapter made for {model.family}")


def _local_width(adapter: str) -> int | None:
    path = Path(adapter)
    return adapter_width(path) if path.is_absolute() and path.name.endswith(".safetensors") else None


def unet_width(model: Model) -> int | None:
    """The checkpoint's UNet cross-attention width when its config is on disk (a local folder or a built
    preset); None otherwise (checked when the adapter loads)."""
    from semanticdraw_cli.families import presets

    folder = Path(model.checkpoint)
    if presets.is_preset(model.checkpoint):
        folder = presets.preset_folder(model.family, model.checkpoint)
    try:
        return int(json.loads((folder / "unet" / "config.json").read_text())["cross_attention_dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
