"""Scene files (YAML version 1, docs/scene-format.md) -> a frozen `Scene` with every default resolved.

Every problem of a file is collected (file, key, line, hint) and raised at once as `SceneError`.
Defaults come from `defaults.py` only. File-level mask checks run here, so `validate` and `render`
refuse a missing picture or an absent label colour before any model loads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semanticdraw_cli.defaults import CANVAS_MULTIPLE, SCHEDULERS
from semanticdraw_cli.errors import MaskError, Problem, SceneError
from semanticdraw_cli.scene import layers
from semanticdraw_cli.scene.rasterize import rasterize_mask
from semanticdraw_cli.scene.safe_io import InputRefused, exists, resolve_path
from semanticdraw_cli.scene.types import Scene
from semanticdraw_cli.scene.dicts import build_from_dict, scene_from_dict, scene_to_dict
from semanticdraw_cli.scene.yaml_text import read_yaml

__all__ = ["load_scene", "scene_from_dict", "scene_to_dict", "scene_warnings"]

YAML_SUFFIXES = (".yaml", ".yml")
LAYERED_SUFFIXES = (".psd", ".ora")
LATENT_FACTOR = CANVAS_MULTIPLE  # canvas pixels per latent pixel of most families' VAEs (FLUX.2's is 16)


def load_scene(path: Path, overrides: Sequence[str] = (), allow_outside: bool = False) -> Scene:
    """Read a scene file (.yaml/.yml, or .psd/.ora through `layers`), apply `--set` overrides, validate.

    A YAML file beside a same-named .psd/.ora holds that drawing's settings: the drawing is loaded.
    Pictures and drawings the scene names must lie in its folder or below, unless `allow_outside`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in LAYERED_SUFFIXES:
        return layers.load_layered_scene(path, overrides, allow_outside=allow_outside)
    if suffix not in YAML_SUFFIXES:
        hint = "scene files end in " + ", ".join(YAML_SUFFIXES + LAYERED_SUFFIXES)
        raise SceneError([Problem(str(path), "", f"unknown scene file type {path.suffix or '(none)'!r}", hint=hint)])
    if any(path.with_suffix(s).is_file() for s in LAYERED_SUFFIXES):  # `art.yaml` beside `art.psd`: its settings
        drawing = layers.drawing_of(path)
        if drawing is not None:
            layers.check_beside(drawing, allow_outside, "drawing")
            return layers.load_layered_scene(drawing, overrides, allow_outside=allow_outside)
    data, lines, problems = read_yaml(path)
    if data is None and not problems:
        problems.append(Problem(str(path), "", "the file is empty", hint="a scene needs at least canvas and regions"))
    elif data is not None and not isinstance(data, dict):
        what = type(data).__name__
        problems.append(Problem(str(path), "", f"expected a mapping of keys (version, canvas, ...), got {what}"))
    if isinstance(data, dict) and data.get("layers") is not None:
        layered = _layered_path(path, data["layers"], lines.get("layers"), allow_outside, problems)
        if problems:
            raise SceneError(problems)
        settings = {k: v for k, v in data.items() if k != "layers"}
        return layers.load_layered_scene(
            layered, overrides, settings=settings, settings_file=path, allow_outside=allow_outside
        )
    if not isinstance(data, dict):
        raise SceneError(problems)
    return build_from_dict(data, path, lines, overrides, problems, allow_outside)  # duplicate keys: reported with the rest


def scene_warnings(scene: Scene) -> list[str]:
    """A LoRA sampled with the checkpoint's own scheduler; regions that paint nothing: an empty mask, or
    one that later regions cover entirely."""
    where = str(scene.source) if scene.source is not None else scene.name
    model_warnings, warnings, cover = [], [], None  # cover: union of the later regions' cores (>= 0.5)
    acc = scene.model.accelerator
    if acc.name == "lora" and acc.scheduler is None:
        kinds = " | ".join(SCHEDULERS)
        model_warnings.append(f"{where}: model.accelerator: the LoRA names no scheduler, so it samples with the "
                              f"checkpoint's own; if it is a few-step accelerator, add scheduler: {kinds}")
    for i in range(len(scene.regions) - 1, -1, -1):
        region = scene.regions[i]
        label = f"{where}: regions[{i}] ({region.name})"
        try:
            inside = rasterize_mask(region.mask, scene.canvas) >= 0.5
        except MaskError as error:
            warnings.append(f"{label}: mask cannot be read: {error}")
            continue
        if not inside.any():
            warnings.append(f"{label}: mask is empty (no pixel at or above 0.5), the region paints nothing")
        elif not _on_latent_grid(inside):
            warnings.append(f"{label}: mask is smaller than the latent grid (no {LATENT_FACTOR}x{LATENT_FACTOR} "
                            "block's centre lies in it), so the sampler skips it and the region paints nothing")
        elif cover is not None and not (inside & ~cover).any():
            warnings.append(f"{label}: mask is entirely covered by later regions, the region paints nothing")
        cover = inside if cover is None else cover | inside
    return model_warnings + warnings[::-1]


# --- helpers ---------------------------------------------------------------------------------


def _on_latent_grid(inside: np.ndarray) -> bool:
    """Whether a latent pixel (the centre sample of an 8×8 block, `masks.to_latent`) lies in the core."""
    half = LATENT_FACTOR // 2
    return bool(inside[half::LATENT_FACTOR, half::LATENT_FACTOR].any())



def _folder(path: Path) -> Path:
    """The folder `path` was named in: a symlinked scene file's own folder, not its target's."""
    return Path(os.path.abspath(path)).parent


def _layered_path(path: Path, value: object, line: int | None, allow_outside: bool, problems: list) -> Path | None:
    """The drawing named under `layers:`, in the scene's folder or below unless `allow_outside`."""
    file, hint = str(path), "paths are relative to the scene file"
    if not isinstance(value, str) or not value:
        problems.append(Problem(file, "layers", "expected the path of a .psd or .ora file", line, hint))
        return None
    try:
        resolved = resolve_path(value, _folder(path), confine=not allow_outside)
    except InputRefused as error:
        problems.append(Problem(file, "layers", str(error), line, error.hint))
        return None
    if not exists(resolved):
        problems.append(Problem(file, "layers", f"file not found: {value}", line, hint))
        return None
    return resolved
