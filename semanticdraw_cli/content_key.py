"""The content key of an image: a sha256 over exactly what determines its pixels (docs/ci.md lists each field).

The inputs are a plain dict (`image_inputs`): the resolved scene without cosmetic fields, the sha256 of every
file the scene reads (`scene.reads.scene_reads`, whatever it lists), the model's identity, the identities of
the extra networks that compute pixels (ControlNets, IP-Adapters), the seed, the versions of the tool and the
libraries that compute the pixels, the device type and the dtype. The key is the sha256 of their canonical JSON.
Reports keep the inputs beside the key, so that `differences` can say which input changed. Nothing here loads a
model: `render --changed` and `check` decide before any model loads.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from semanticdraw_cli import defaults, report
from semanticdraw_cli.file_hashes import HashCache, file_sha256
from semanticdraw_cli.scene.reads import scene_reads
from semanticdraw_cli.scene.types import Scene

KEY_FORMAT = 2  # raised whenever the fields or their canonical form change: every older key is then stale
KEYED_VERSIONS = ("semanticdraw", "torch", "diffusers", "transformers")
SCENE_SUFFIXES = (".yaml", ".yml")  # a scene file enters as the resolved scene, not as bytes
UNKEYED_SAMPLER = ("seed", "images", "max_batch")  # the seed is keyed per image; batching changes no item
LISTED = 4  # changed scene fields named before "and N more"


def scene_inputs(scene: Scene, hashes: HashCache) -> dict[str, Any]:
    """What every image of the scene shares in its key: scene, files, model, versions."""
    return {
        "key_format": KEY_FORMAT,
        "scene": canonical_scene(scene),
        "files": file_digests(scene),
        "model": model_identity(scene, hashes),
        "networks": network_identities(scene, hashes),
        "versions": {name: value for name, value in report.versions().items() if name in KEYED_VERSIONS},
    }


def image_inputs(shared: dict[str, Any], seed: int, device_type: str, dtype: str) -> dict[str, Any]:
    return {**shared, "seed": seed, "device": device_type, "dtype": dtype}


def content_key(inputs: dict[str, Any]) -> str:
    """sha256 of the inputs' canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def stamp(shared: dict[str, Any], seed: int, device_type: str, dtype: str) -> dict[str, Any]:
    """The report's `content_key` and `content_inputs` of one image."""
    inputs = image_inputs(shared, seed, device_type, dtype)
    return {"content_key": content_key(inputs), "content_inputs": inputs}


def canonical_scene(scene: Scene) -> dict[str, Any]:
    """The resolved scene without what changes no pixel: names, score thresholds, the image count and batch
    size, the preview decoder; file paths relative to the scene's folder (a checkout elsewhere keeps its keys),
    and the pixels of a drawing's layers as their sha256. The model's checkpoint and LoRA are in `model_identity`,
    ControlNets and IP-Adapters in `network_identities`."""
    from semanticdraw_cli.scene.dicts import scene_to_dict

    data = scene_to_dict(scene)
    data.pop("quality", None)
    for name in UNKEYED_SAMPLER:
        data["sampler"].pop(name, None)
    data["model"].pop("checkpoint", None)
    data["model"].pop("preview_decoder", None)  # decodes watch's previews only, never an image's pixels
    if isinstance(data["model"]["accelerator"], dict):
        data["model"]["accelerator"].pop("lora", None)
    if scene.background.image is not None:
        data["background"]["image"] = relative_name(scene, scene.background.image)
    if scene.background.image_array is not None:
        data["background"]["pixels"] = _array_digest(scene.background.image_array)
    for entry, region in zip(data["regions"], scene.regions):
        entry.pop("name", None)
        entry.pop("min_score", None)
        mask = region.mask
        if mask.kind in ("image", "label_map"):
            entry["mask"][mask.kind] = relative_name(scene, mask.path)
        elif mask.kind == "array":
            entry["mask"] = {"pixels": _array_digest(mask.array)}
    _without_networks(data, scene)
    return data


def _without_networks(data: dict[str, Any], scene: Scene) -> None:
    """Control and reference entries without their networks (in `networks`), their pictures named relative to
    the scene's folder."""
    owners = [(data.get("control") or [], scene.control)]
    owners += [(entry.get("control") or [], region.control) for entry, region in zip(data["regions"], scene.regions)]
    for raw_entries, entries in owners:
        for raw, entry in zip(raw_entries, entries):
            raw.pop("model", None)
            if entry.image is not None:
                raw["image"] = relative_name(scene, entry.image)
    for entry, region in zip(data["regions"], scene.regions):
        if region.reference is not None:
            entry["reference"].pop("adapter", None)
            entry["reference"]["image"] = relative_name(scene, region.reference.image)


def file_digests(scene: Scene) -> dict[str, str | None]:
    """{name relative to the scene's folder: sha256, or None when missing} of every file the scene reads,
    but the model's (in `model_identity`) and a YAML scene file itself (its content is the resolved scene)."""
    found = {}
    for read in scene_reads(None, scene):
        if read.model or (scene.source is not None and read.path == Path(os.path.abspath(scene.source))
                          and read.path.suffix.lower() in SCENE_SUFFIXES):
            continue
        try:
            digest = file_sha256(read.path)
        except OSError:
            digest = None
        found[relative_name(scene, read.path)] = digest
    return found


def model_identity(scene: Scene, hashes: HashCache) -> dict[str, Any]:
    """The checkpoint's identity, and the accelerator LoRA's when it is read: a preset carries its own."""
    from semanticdraw_cli.families.presets import is_preset

    model = scene.model
    identity = {"checkpoint": source_identity(scene, model.checkpoint, hashes)}
    accelerator = model.accelerator
    if accelerator.lora is not None and accelerator.name != "none" and (
            accelerator.name == "lora" or not is_preset(model.checkpoint)):
        identity["lora"] = source_identity(scene, accelerator.lora, hashes)
        identity["lora_file"] = accelerator.weight_name
    return identity


def network_identities(scene: Scene, hashes: HashCache) -> dict[str, dict[str, Any]]:
    """{scene field: identity} of each extra network that computes pixels: every ControlNet (`control[n].model`,
    top level and per region) and every region's IP-Adapter (`regions[i].reference.adapter`). A preset is named
    with the version its folder carries; a local folder or file, a hub id as the checkpoint is (`source_identity`)."""
    from semanticdraw_cli.families import controlnet

    found = {}
    owners = [("", scene.control)] + [(f"regions[{i}].", region.control) for i, region in enumerate(scene.regions)]
    for prefix, entries in owners:
        for n, entry in enumerate(entries):
            found[f"{prefix}control[{n}].model"] = (
                {"preset": entry.model, "builder": controlnet.preset_version()}
                if entry.model in defaults.CONTROL_PRESETS else source_identity(scene, entry.model, hashes))
    for i, region in enumerate(scene.regions):
        if region.reference is not None:
            found[f"regions[{i}].reference.adapter"] = adapter_identity(scene, region.reference.adapter, hashes)
    return found


def adapter_identity(scene: Scene, adapter: str, hashes: HashCache) -> dict[str, Any]:
    """An IP-Adapter's identity: a preset's name and folder version; a local weights file's sha256 with its
    `image_encoder/` folder's; a hub file (owner/repo/path/file) by the cached revision of its repository."""
    from semanticdraw_cli.families import ip_adapter

    if adapter in ip_adapter.PRESETS:
        return {"preset": adapter, "builder": ip_adapter.preset_version()}
    if not os.path.isabs(adapter):
        return {"hub": adapter, "revision": hub_revision(ip_adapter.locate(adapter, scene.model.family)[0])}
    identity = source_identity(scene, adapter, hashes)
    encoder = Path(adapter).parent / ip_adapter.IMAGE_ENCODER_FOLDER
    if identity["files"] is not None:
        try:
            encoder_files = hashes.tree(encoder)
            identity["files"].update({f"{encoder.name}/{name}": digest for name, digest in encoder_files.items()})
        except OSError:
            identity["missing"] = relative_name(scene, encoder)
    return identity


def source_identity(scene: Scene, source: str, hashes: HashCache) -> dict[str, Any]:
    """A preset: its name and builder version; a local file or folder: its files' sha256 (cached by path, size,
    mtime); a hub id: the commit the local Hugging Face cache resolves it to (None when not cached)."""
    from semanticdraw_cli.families.presets import PRESET_VERSION, is_preset
    from semanticdraw_cli.scene.sources import looks_local

    if is_preset(source):
        return {"preset": source, "builder": PRESET_VERSION}
    if looks_local(source) or os.path.exists(source):
        try:
            return {"files": hashes.tree(source)}
        except OSError:
            return {"files": None, "missing": relative_name(scene, source)}
    return {"hub": source, "revision": hub_revision(source)}


def hub_revision(repo_id: str) -> str | None:
    """The commit `main` resolves to in the local Hugging Face cache (no network); None when not cached."""
    from huggingface_hub.constants import HF_HUB_CACHE

    ref = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def relative_name(scene: Scene, path: Path | str) -> str:
    """A path as it is named from the scene's folder (POSIX separators); absolute for a scene from no file."""
    if scene.source is None:
        return Path(os.path.abspath(path)).as_posix()
    return Path(os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(scene.source)))).as_posix()


def _array_digest(array) -> str:
    import numpy as np

    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype.str}{array.shape}".encode() + array.tobytes()).hexdigest()


def differences(old: Any, new: dict[str, Any]) -> list[str]:
    """What changed between the inputs an output was made from (`old`, from its report) and those of now,
    in words: `mask masks/sky.png changed`, `dtype float16 -> float32`, `scene field sampler.steps`."""
    if not isinstance(old, dict) or old.get("key_format") != new.get("key_format"):
        return ["the report holds no content inputs of this version of semanticdraw"]
    found = []
    for name in sorted(set(old.get("files") or {}) | set(new["files"])):
        before, after = (old.get("files") or {}).get(name), new["files"].get(name)
        if before != after:
            found.append(f"{name} " + ("is missing" if after is None else "is new" if before is None else "changed"))
    if old.get("scene") != new["scene"]:
        paths = _changed_paths(old.get("scene"), new["scene"], "")
        shown = ", ".join(paths[:LISTED]) + (f" and {len(paths) - LISTED} more" if len(paths) > LISTED else "")
        found.append(f"scene fields changed: {shown}")
    if old.get("model") != new["model"]:
        found.append(f"the model changed: {_brief(old.get('model'))} -> {_brief(new['model'])}")
    networks = old.get("networks") if isinstance(old.get("networks"), dict) else {}
    for name in sorted(set(networks) | set(new["networks"])):
        before, after = networks.get(name), new["networks"].get(name)
        if before != after:
            found.append(f"{name} changed: {_identity_words(before)} -> {_identity_words(after)}")
    for name in ("seed", "device", "dtype"):
        if old.get(name) != new[name]:
            found.append(f"{name} {old.get(name)} -> {new[name]}")
    versions = old.get("versions") if isinstance(old.get("versions"), dict) else {}
    for name, value in new["versions"].items():
        if versions.get(name) != value:
            found.append(f"{name} version {versions.get(name)} -> {value}")
    return found or ["the content key differs"]


def _changed_paths(old: Any, new: Any, prefix: str) -> list[str]:
    """Dotted paths (`regions[1].prompt`) where two JSON values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [path for key in sorted(set(old) | set(new), key=str)
                for path in _changed_paths(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [path for n, (a, b) in enumerate(zip(old, new)) for path in _changed_paths(a, b, f"{prefix}[{n}]")]
    return [] if old == new else [prefix or "the scene"]


def _brief(identity: Any) -> str:
    """A model identity in a few words: the preset and builder, the hub revision, or a digest of the files."""
    if not isinstance(identity, dict):
        return "unknown"
    parts = [f"{role} {_identity_words(value)}" for role, value in identity.items() if isinstance(value, dict)]
    return ", ".join(parts) or "unknown"


def _identity_words(value: Any) -> str:
    """One network's identity in a few words: `preset tiny (builder 2)`, `org/name@abc123`, `files 1f2e3d...`."""
    if not isinstance(value, dict):
        return "none"
    if "preset" in value:
        return f"preset {value['preset']} (builder {value.get('builder')})"
    if "hub" in value:
        return f"{value['hub']}@{(value.get('revision') or 'not cached')[:12]}"
    return f"files {content_key(value)[:12]}"
