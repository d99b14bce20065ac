"""The content key of an image: a sha256 over exactly what determines its pixels (docs/ci.md lists each field).

The inputs are a plain dict (`image_inputs`): the resolved scene without cosmetic fields, the sha256 of every
file the scene reads (`scene.reads.scene_reads`, whatever it lists), the model's identity, the seed, the
versions of the tool and the libraries that compute the pixels, the device type and the dtype. The key is the
sha256 of their canonical JSON. Reports keep the inputs beside the key, so that `differences` can say which
input changed. Nothing here loads a model: `render --changed` and `check` decide before any model loads.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from semanticdraw_cli import report
from semanticdraw_cli.file_hashes import HashCache, file_sha256
from semanticdraw_cli.scene.reads import scene_reads
from semanticdraw_cli.scene.types import Scene

KEY_FORMAT = 1  # raised whenever the fields or their canonical form change: every older key is then stale
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
    and the pixels of a drawing's layers as their sha256. The model's checkpoint and LoRA are in `model_identity`."""
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
    return data


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
    parts = []
    for role, value in identity.items():
        if not isinstance(value, dict):
            continue
        if "preset" in value:
            parts.append(f"{role} preset {value['preset']} (builder {value.get('builder')})")
        elif "hub" in value:
            parts.append(f"{role} {value['hub']}@{(value.get('revision') or 'not cached')[:12]}")
        else:
            parts.append(f"{role} files {content_key(value)[:12]}")
    return ", ".join(parts) or "unknown"
