"""Region LoRAs in a scene: `loras: [{lora, weight, weight_name}]` read and checked before any model loads.

A local LoRA must be a readable .safetensors file whose tensor names fit the scene's family: the header
(names and shapes, no weights) says which network it adapts (a UNet, SD3's joint transformer, FLUX.1's or
FLUX.2's), and where the checkpoint's network config is on disk (a local folder, a built preset), its
width too (a LoRA made for an SD 1.5 model does not fit an SDXL one). Its bytes are hashed once here, so
the scene records what it read and an edited file is a changed scene (`watch` re-renders).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

from semanticdraw_cli import defaults as D
from semanticdraw_cli.scene.checks import Checker, describe
from semanticdraw_cli.scene.safe_io import InputRefused, Kind, open_file, read_chunks
from semanticdraw_cli.scene.sources import path_field
from semanticdraw_cli.scene.types import Region, RegionLora

LORA = Kind("a LoRA file", "MAX_LORA_BYTES")
KEYS = ("lora", "weight", "weight_name", "sha256")
NETWORKS = {  # which network a LoRA adapts -> the families built on it
    "unet": ("sd15", "sd2", "sdxl"),
    "joint": ("sd3", "flux", "klein"),  # double-stream blocks only: SD3, FLUX.1 and FLUX.2 name them alike
    "flux1": ("flux",),
    "flux2": ("klein",),
}
MARKERS = (  # (pattern in a tensor name, network); a UNet's blocks hold transformer_blocks too
    (re.compile(r"to_qkv_mlp_proj|double_stream_modulation|ff(_context)?\.linear_(in|out)"), "flux2"),
    (re.compile(r"single_transformer_blocks|single_blocks|double_blocks"), "flux1"),
    (re.compile(r"transformer_blocks\.\d+\.(attn|ff|ff_context|norm1)\."), "joint"),
    (re.compile(r"down_blocks|up_blocks|mid_block|lora_unet_|input_blocks|output_blocks"), "unet"),
)
SDXL_ONLY = re.compile(r"text_encoder_2|lora_te2_|add_embedding")


def parse(c: Checker, value: object, key: str, base: Path, inherited: tuple[RegionLora, ...]) -> tuple[RegionLora, ...]:
    """A `loras` list (absent: `inherited`, the defaults'), each entry checked; local files hashed."""
    if value is None:
        return inherited
    if not isinstance(value, list):
        c.add(key, f"expected a list of {{lora: path, weight: 0.8}}, got {describe(value)}")
        return ()
    found = []
    for i, raw in enumerate(value):
        entry = f"{key}[{i}]"
        d = c.section({"lora": raw} if isinstance(raw, str) else raw, entry, KEYS)
        lora = c.text(d, "lora", f"{entry}.lora", None)
        if not lora or not lora.strip():
            c.add(f"{entry}.lora", "missing", hint="a .safetensors file beside the scene, or a hub id (owner/name)")
            continue
        weight = c.number(d, "weight", f"{entry}.weight", D.LORA_WEIGHT)
        weight_name = c.text(d, "weight_name", f"{entry}.weight_name", None)
        expected = c.text(d, "sha256", f"{entry}.sha256", None)
        found.append(_entry(c, lora, weight, weight_name, expected, base, f"{entry}.lora"))
    return tuple(entry for entry in found if entry is not None)


def _entry(c: Checker, lora: str, weight: float, weight_name: str | None, expected: str | None, base: Path,
           key: str) -> RegionLora | None:
    if re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", lora) and not lora.endswith(D.WEIGHT_FILE_SUFFIXES):
        return RegionLora(lora, weight, weight_name)  # a hub id: fetched and checked when the model loads
    path = path_field(c, lora, base, key)
    if path is None:
        return None
    if path.suffix != ".safetensors":
        c.add(key, f"{path} is not a .safetensors file", hint="region LoRAs are read as .safetensors only")
        return None
    try:
        digest = file_digest(path)
    except InputRefused as error:
        c.add(key, f"file not found: {path}" if error.missing else str(error),
              "paths are relative to the scene file's folder" if error.missing else error.hint)
        return None
    if expected is not None and expected != digest:
        c.add(key, f"{path} holds other bytes than the scene records (sha256 {digest[:12]}…, expected "
              f"{expected[:12]}…)", hint="the LoRA changed since the image was made: remove sha256 to accept it")
    return RegionLora(str(path), weight, weight_name, digest)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in read_chunks(path, LORA):
        digest.update(chunk)
    return digest.hexdigest()


def header(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from a .safetensors header; ValueError when the file is not one."""
    with open_file(path, LORA) as handle:
        size_bytes = handle.read(8)
        if len(size_bytes) < 8:
            raise ValueError("too short for a .safetensors file")
        (size,) = struct.unpack("<Q", size_bytes)
        if size > D.MAX_LORA_HEADER_BYTES:
            raise ValueError(f"its header claims {size:,} bytes, over the limit of {D.MAX_LORA_HEADER_BYTES:,}")
        text = handle.read(size)
    try:
        entries = json.loads(text)
        shapes = {name: list(info["shape"]) for name, info in entries.items() if name != "__metadata__"}
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise ValueError("its header is not a .safetensors header") from None
    if not shapes:
        raise ValueError("it holds no tensors")
    return shapes


def networks(names: list[str]) -> set[str]:
    """The networks (keys of NETWORKS) whose layers the tensor names adapt."""
    return {network for name in names for pattern, network in MARKERS if pattern.search(name)}


def families_of(shapes: dict[str, list[int]]) -> tuple[str, ...]:
    """The families a LoRA's tensor names fit; () when none of them name a known network's layers."""
    found = networks(list(shapes))
    if "flux2" in found:
        return NETWORKS["flux2"]
    if "flux1" in found:
        return NETWORKS["flux1"]
    if "unet" in found:
        return ("sdxl",) if any(SDXL_ONLY.search(name) for name in shapes) else NETWORKS["unet"]
    return NETWORKS["joint"] if "joint" in found else ()


def check(c: Checker, regions: tuple[Region, ...], family: str, network_config: dict | None) -> None:
    """The scene's region LoRAs: at most MAX_REGION_LORAS distinct files, each a LoRA of the scene's family."""
    distinct: dict[tuple, str] = {}
    for i, region in enumerate(regions):
        for j, lora in enumerate(region.loras):
            key = f"regions[{i}].loras[{j}].lora"
            if (lora.lora, lora.weight_name) not in distinct and lora.sha256 is not None:
                _check_file(c, key, Path(lora.lora), family, network_config)
            distinct.setdefault((lora.lora, lora.weight_name), key)
    if len(distinct) > D.MAX_REGION_LORAS:
        c.add("regions", f"{len(distinct)} distinct LoRAs; at most {D.MAX_REGION_LORAS} per scene",
              hint=f"the 17th is {list(distinct)[D.MAX_REGION_LORAS][0]} ({list(distinct.values())[D.MAX_REGION_LORAS]})")


def _check_file(c: Checker, key: str, path: Path, family: str, network_config: dict | None) -> None:
    try:
        shapes = header(path)
    except (ValueError, InputRefused) as error:
        c.add(key, f"{path} is not a readable LoRA: {error}", hint="save it again as .safetensors")
        return
    fits = families_of(shapes)
    if not fits:
        c.add(key, f"{path} adapts no layer of a known network (its tensors: {', '.join(list(shapes)[:2])}, …)",
              hint=f"use a LoRA trained for {family}")
    elif family not in fits:
        c.add(key, f"{path} is a LoRA for {' or '.join(fits)}, not {family}", hint=f"use a LoRA trained for {family}")
    elif network_config is not None and (width := _lora_width(shapes)) is not None:
        wanted = _model_width(network_config)
        if wanted is not None and width[1] != wanted:
            c.add(key, f"{path} is a LoRA for a {family} model of width {width[1]} ({width[0]}), this checkpoint's "
                  f"is {wanted}", hint="use a LoRA trained for this checkpoint's base model")


def _lora_width(shapes: dict[str, list[int]]) -> tuple[str, int] | None:
    """(layer, input width) of a cross-attention key projection (UNet) or a joint block's query (transformers)."""
    for name, shape in shapes.items():
        if re.search(r"(attn2\.to_k|transformer_blocks\.\d+\.attn\.to_q)\.(lora_A|lora_down)\.weight$", name):
            return name.split(".lora_")[0], shape[-1]
    return None


def _model_width(config: dict) -> int | None:
    """What `_lora_width` must equal: the UNet's cross-attention width, or the transformer's hidden size."""
    if "cross_attention_dim" in config:
        width = config["cross_attention_dim"]
        return width if isinstance(width, int) else None
    heads, head_dim = config.get("num_attention_heads"), config.get("attention_head_dim")
    return heads * head_dim if isinstance(heads, int) and isinstance(head_dim, int) else None


def network_config(family: str, checkpoint: str) -> dict | None:
    """The config of the checkpoint's network when it is on disk (a local folder, a built preset); else None."""
    from semanticdraw_cli.families import presets
    from semanticdraw_cli.scene.safe_io import SETTINGS, read_text

    folder = presets.preset_folder(family, checkpoint) if presets.is_preset(checkpoint) else Path(checkpoint)
    network = "unet" if family in NETWORKS["unet"] else "transformer"
    try:
        config = json.loads(read_text(folder / network / "config.json", SETTINGS))
    except (InputRefused, ValueError, OSError):
        return None
    return config if isinstance(config, dict) else None
