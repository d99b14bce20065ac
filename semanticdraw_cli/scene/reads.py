"""Every file a scene reads, with what it is to the scene: the one list that `watch` watches and that
every command's outputs are checked against (a command never writes over what a scene of its call reads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from semanticdraw_cli.scene.types import Scene

SIBLING_SUFFIXES = (".yaml", ".yml", ".psd", ".ora")  # a drawing's sidecar, a sidecar's drawing
SETTINGS_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Read:
    """A file (or model folder) a scene reads."""

    path: Path  # absolute, links not resolved; may be missing (a sibling that does not exist yet)
    role: str  # what it is, naming the scene: "the label map of region 'sky' in scenes/a.yaml"
    model: bool = False  # a checkpoint or LoRA: read when the model loads, not watched for saves


def scene_reads(given: Path | None, scene: Scene | None = None) -> tuple[Read, ...]:
    """The file as given (None: the scene came from no file), its same-named siblings (.yaml, .yml,
    .psd, .ora: a drawing's settings, a sidecar's drawing) and, once loaded, what the scene names: the
    drawing, masks, label maps, the background picture, and a checkpoint or accelerator LoRA given as a
    local path (hub ids and presets are not files of the scene)."""
    label = str(given if given is not None else (scene.source if scene and scene.source else scene.name))
    found: list[Read] = []
    if given is not None:
        given = absolute(given)
        found.append(Read(given, f"the scene file {label}"))
        for suffix in SIBLING_SUFFIXES:
            sibling = given.with_suffix(suffix)
            if sibling != given:
                kind = "settings file" if suffix in SETTINGS_SUFFIXES else "drawing"
                found.append(Read(sibling, f"the {kind} {sibling.name} beside {label}"))
    if scene is None:
        return tuple(found)
    if scene.source is not None:
        found.append(Read(absolute(scene.source), f"the drawing {Path(scene.source).name} of {label}"))
    for region in scene.regions:
        if region.mask.path is not None:
            kind = "label map" if region.mask.kind == "label_map" else "mask"
            found.append(Read(absolute(region.mask.path), f"the {kind} of region {region.name!r} in {label}"))
    if scene.background.image is not None:
        found.append(Read(absolute(scene.background.image), f"the background picture of {label}"))
    found.extend(_reference_reads(scene, label))
    if scene.reroll is not None:
        found.append(Read(absolute(scene.reroll.image), f"the image {label} re-rolls regions of"))
    found += control_reads(scene, label)
    for region in scene.regions:
        for lora in region.loras:
            if lora.sha256 is not None:  # a local file: watched, since `watch` re-renders when a LoRA changes
                found.append(Read(absolute(lora.lora), f"the LoRA of region {region.name!r} in {label}"))
    accelerator = scene.model.accelerator
    for key, value in (("model.checkpoint", scene.model.checkpoint), ("model.accelerator.lora", accelerator.lora),
                       ("model.preview_decoder", scene.model.preview_decoder)):
        if value is not None and os.path.isabs(value) and os.path.exists(value):  # the loader made local paths absolute
            found.append(Read(Path(value), f"the model file ({key}) of {label}", model=True))
    return tuple(_first_of_each(found))


def _reference_reads(scene: Scene, label: str) -> list[Read]:
    """Each region's reference picture (watched), and its adapter file when local (read when it loads)."""
    found = []
    for region in scene.regions:
        if region.reference is not None:
            role = f"the reference picture of region {region.name!r} in {label}"
            found.append(Read(absolute(region.reference.image), role))
            if os.path.isabs(region.reference.adapter):
                found.append(Read(Path(region.reference.adapter), f"the IP-Adapter of region {region.name!r} in {label}",
                                  model=True))
    return found


def control_reads(scene: Scene, label: str) -> list[Read]:
    """The control pictures (watched) and ControlNets given as local folders (model files) of every entry."""
    owners = [("control", scene.control)] + [(f"region {r.name!r}", r.control) for r in scene.regions]
    found = []
    for owner, entries in owners:
        for n, entry in enumerate(entries):
            where = f"control[{n}] of {owner} in {label}" if owner != "control" else f"control[{n}] of {label}"
            if entry.image is not None:
                found.append(Read(absolute(entry.image), f"the control picture ({where})"))
            if os.path.isabs(entry.model) and os.path.exists(entry.model):
                found.append(Read(Path(entry.model), f"the ControlNet ({where})", model=True))
    return found


def absolute(path: Path | str) -> Path:
    """The path made absolute without resolving links (the watcher reports paths the same way)."""
    return Path(os.path.abspath(path))


def _first_of_each(reads: list[Read]) -> list[Read]:
    seen: dict[Path, Read] = {}
    for read in reads:
        seen.setdefault(read.path, read)
    return list(seen.values())
