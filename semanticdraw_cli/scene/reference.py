"""A region's `reference: {image, weight, adapter}` (an image prompt through an IP-Adapter), as checks.

Everything checkable without loading a model is checked here, so a bad reference exits 2 before any
model loads: the picture, the weight, the adapter file and its `image_encoder/` folder, one adapter per
scene, a family that takes reference pictures, and, where the checkpoint's network config can be read
(a local folder or a built preset), that the adapter was made for its kind of network (a UNet, or a FLUX.1
transformer in XLabs' layout) and its text width. A preset adapter (`tiny`) goes with the model preset of
the same name.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path

from semanticdraw_cli import defaults as D
from semanticdraw_cli.families import registry
from semanticdraw_cli.families.ip_adapter import IMAGE_ENCODER_FOLDER, PRESETS
from semanticdraw_cli.scene.checks import Checker, describe
from semanticdraw_cli.scene.safe_io import PICTURE, InputRefused, check_file
from semanticdraw_cli.scene.sources import path_field
from semanticdraw_cli.scene.types import Model, Reference, Region

KEYS = ("image", "weight", "adapter")
HUB_FILE = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/[A-Za-z0-9_.-]+\.(safetensors|bin)")
ADAPTER_HINT = ("an IP-Adapter weights file with its image_encoder/ folder beside it, owner/repo/path/file.safetensors, "
                "or tiny (a random one for the tiny model preset)")
NETWORKS = {"unet": "a UNet of cross-attention width", "transformer": "a FLUX.1 transformer of text width"}
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
    hub file reference or preset name kept as it is (fetched or built when the model loads)."""
    if text in PRESETS:
        return text
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
    if local.name.endswith(".safetensors") and adapter_network(local) is None:
        c.add(key, f"{local} holds no IP-Adapter weights (no image_proj.* and ip_adapter.* tensors, nor XLabs' "
                   "ip_adapter_proj_model.* and double_blocks.*)", hint=ADAPTER_HINT)
        return None
    return str(local)


def adapter_network(path: Path) -> tuple[str, int] | None:
    """(the kind of network an IP-Adapter .safetensors file was made for, "unet" or "transformer", and the width
    of the text states its image tokens sit beside), read from the file's header alone; None when the file is no
    IP-Adapter. diffusers numbers a UNet's adapter layers from 1 and a FLUX.1 transformer's from 0."""
    try:
        with open(path, "rb") as file:
            (size,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(size)) if size <= MAX_HEADER_BYTES else {}
    except (OSError, ValueError, struct.error):
        return None
    projections = ("image_proj.", "ip_adapter_proj_model.")
    if not isinstance(header, dict) or not any(name.startswith(projections) for name in header):
        return None
    for kind, key in (("unet", "ip_adapter.1.to_k_ip.weight"), ("transformer", "ip_adapter.0.to_k_ip.weight"),
                      ("transformer", "double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight")):
        entry = header.get(key)
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if isinstance(shape, list) and len(shape) == 2 and isinstance(shape[1], int):
            return kind, shape[1]
    return None


def check_references(c: Checker, regions: Sequence[Region], model: Model) -> None:
    """What the regions' references ask of the model: a family that takes them, one adapter, its width."""
    keyed = [(f"regions[{i}].reference", r.reference) for i, r in enumerate(regions) if r.reference is not None]
    if not keyed:
        return
    if not registry.family(model.family).reference_pictures:
        having = ", ".join(name for name, spec in registry.families().items() if spec.reference_pictures)
        c.add(keyed[0][0], f"the {model.family} family takes no reference pictures",
              hint=f"IP-Adapters work with {having}")
        return
    adapters = sorted({reference.adapter for _, reference in keyed})
    if len(adapters) > 1:
        c.add(keyed[0][0], f"{len(adapters)} different adapters ({', '.join(adapters)}); a scene uses one",
              hint="give every reference the same adapter")
        return
    if adapters[0] in PRESETS:
        if model.checkpoint != adapters[0]:
            c.add(f"{keyed[0][0]}.adapter", f"{adapters[0]} is a random IP-Adapter for the {adapters[0]} model preset; "
                  f"model.checkpoint is {model.checkpoint!r}", hint=f"use model.checkpoint: {adapters[0]}, or an "
                  f"IP-Adapter file made for {model.family}")
        return
    made, wanted = _local_network(adapters[0]), network_width(model)
    if made is not None and wanted is not None and made != wanted:
        c.add(f"{keyed[0][0]}.adapter", f"{adapters[0]} is an IP-Adapter for {NETWORKS[made[0]]} {made[1]}; "
              f"model.checkpoint ({model.family}) has {NETWORKS[wanted[0]]} {wanted[1]}",
              hint=f"use an IP-Adapter made for {model.family}")


def _local_network(adapter: str) -> tuple[str, int] | None:
    path = Path(adapter)
    return adapter_network(path) if path.is_absolute() and path.name.endswith(".safetensors") else None


def network_width(model: Model) -> tuple[str, int] | None:
    """("unet", its cross-attention width) or ("transformer", its text width) of the checkpoint's network when
    its config is on disk (a local folder or a built preset); None otherwise (checked when the adapter loads)."""
    from semanticdraw_cli.families import presets

    folder = Path(model.checkpoint)
    if presets.is_preset(model.checkpoint):
        folder = presets.preset_folder(model.family, model.checkpoint)
    for kind, key in (("unet", "cross_attention_dim"), ("transformer", "joint_attention_dim")):
        try:
            return kind, int(json.loads((folder / kind / "config.json").read_text())[key])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None
