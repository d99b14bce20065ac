"""Scene files (YAML version 1, DESIGN.md §2) -> a frozen `Scene` with every default resolved.

Every problem of a file is collected (file, key, line, hint) and raised at once as `SceneError`.
Defaults come from `defaults.py` only. File-level mask checks run here, so `validate` and `render`
refuse a missing picture or an absent label colour before any model loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from semanticdraw_cli.defaults import SCHEDULERS
from semanticdraw_cli.errors import MaskError, Problem, SceneError
from semanticdraw_cli.rasterize import rasterize_mask
from semanticdraw_cli.safe_io import InputRefused, exists, resolve_path
from semanticdraw_cli.scene import Region, Scene
from semanticdraw_cli.scene_schema import build_scene
from semanticdraw_cli.scene_yaml import apply_overrides, deep_copy, read_yaml

YAML_SUFFIXES = (".yaml", ".yml")
LAYERED_SUFFIXES = (".psd", ".ora")


def load_scene(path: Path, overrides: Sequence[str] = (), allow_outside: bool = False) -> Scene:
    """Read a scene file (.yaml/.yml, or .psd/.ora through `layers`), apply `--set` overrides, validate.

    A YAML file beside a same-named .psd/.ora holds that drawing's settings: the drawing is loaded.
    Pictures and drawings the scene names must lie in its folder or below, unless `allow_outside`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in LAYERED_SUFFIXES:
        from semanticdraw_cli.layers import load_layered_scene

        return load_layered_scene(path, overrides, allow_outside=allow_outside)
    if suffix not in YAML_SUFFIXES:
        hint = "scene files end in " + ", ".join(YAML_SUFFIXES + LAYERED_SUFFIXES)
        raise SceneError([Problem(str(path), "", f"unknown scene file type {path.suffix or '(none)'!r}", hint=hint)])
    if any(path.with_suffix(s).is_file() for s in LAYERED_SUFFIXES):  # `art.yaml` beside `art.psd`: its settings
        from semanticdraw_cli.layers import drawing_of, load_layered_scene

        drawing = drawing_of(path)
        if drawing is not None:
            return load_layered_scene(drawing, overrides, allow_outside=allow_outside)
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
        from semanticdraw_cli.layers import load_layered_scene

        settings = {k: v for k, v in data.items() if k != "layers"}
        return load_layered_scene(layered, overrides, settings=settings, settings_file=path, allow_outside=allow_outside)
    if not isinstance(data, dict):
        raise SceneError(problems)
    return _build(data, path, lines, overrides, problems, allow_outside)  # duplicate keys: reported with the rest


def scene_from_dict(
    data: dict, source: Path | None, overrides: Sequence[str] = (), allow_outside: bool = False
) -> Scene:
    """Validate a raw scene dict (paths relative to `source`'s folder) into a Scene; SceneError lists all problems."""
    return _build(data, Path(source) if source is not None else None, {}, overrides, (), allow_outside)


def scene_to_dict(scene: Scene) -> dict:
    """The resolved scene as a version-1 scene dict: absolute paths, every field explicit."""
    s, m = scene.sampler, scene.model
    acc = m.accelerator
    accelerator = acc.name if acc.name != "lora" else {
        "lora": acc.lora, "weight": acc.weight, "weight_name": acc.weight_name, "scheduler": acc.scheduler,
    }
    return {
        "version": scene.version,
        "canvas": {"width": scene.canvas.width, "height": scene.canvas.height},
        "model": {"family": m.family, "checkpoint": m.checkpoint, "accelerator": accelerator, "drop_t5": m.drop_t5},
        "sampler": {
            "method": s.method, "steps": list(s.steps), "grid": s.grid, "guidance": s.guidance, "seed": s.seed,
            "images": s.images, "mask_mode": s.mask_mode, "plan": s.plan, "cover_alpha": s.cover_alpha,
            "max_batch": s.max_batch, "tile": {"size": s.tile.size, "stride": s.tile.stride},
            "bootstrap": {"steps": s.bootstrap.steps, "mix": s.bootstrap.mix,
                          "leak_sensitivity": s.bootstrap.leak_sensitivity},
        },
        "background": {
            "prompt": scene.background.prompt, "negative": scene.background.negative,
            "image": str(scene.background.image) if scene.background.image is not None else None,
        },
        "regions": [
            {"name": r.name, "prompt": r.prompt, "negative": r.negative, "blur": r.blur, "strength": r.strength,
             "prompt_strength": r.prompt_strength, "mask": _mask_to_dict(r)}
            for r in scene.regions
        ],
    }


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
        elif cover is not None and not (inside & ~cover).any():
            warnings.append(f"{label}: mask is entirely covered by later regions, the region paints nothing")
        cover = inside if cover is None else cover | inside
    return model_warnings + warnings[::-1]


# --- helpers ---------------------------------------------------------------------------------


def _build(
    data: object, source: Path | None, lines: dict[str, int], overrides: Sequence[str], problems: Sequence[Problem] = (),
    allow_outside: bool = False,
) -> Scene:
    file = str(source) if source is not None else "<scene>"
    if not isinstance(data, dict):
        raise SceneError([Problem(file, "", f"expected a mapping of keys, got {type(data).__name__}")])
    data = deep_copy(data)
    overridden, override_problems = apply_overrides(data, overrides, file)
    return build_scene(data, source, lines, overridden, [*problems, *override_problems], allow_outside)


def _layered_path(path: Path, value: object, line: int | None, allow_outside: bool, problems: list) -> Path | None:
    """The drawing named under `layers:`, in the scene's folder or below unless `allow_outside`."""
    file, hint = str(path), "paths are relative to the scene file"
    if not isinstance(value, str) or not value:
        problems.append(Problem(file, "layers", "expected the path of a .psd or .ora file", line, hint))
        return None
    try:
        resolved = resolve_path(value, path.resolve().parent, confine=not allow_outside)
    except InputRefused as error:
        problems.append(Problem(file, "layers", str(error), line, error.hint))
        return None
    if not exists(resolved):
        problems.append(Problem(file, "layers", f"file not found: {value}", line, hint))
        return None
    return resolved


def _mask_to_dict(region: Region) -> dict:
    mask = region.mask
    if mask.kind == "image":
        return {"image": str(mask.path)}
    if mask.kind == "label_map":
        return {"label_map": str(mask.path), "color": "#{:02x}{:02x}{:02x}".format(*mask.color)}
    if mask.kind == "array":
        return {"layer": region.name}  # pixels from a layered drawing; not reloadable from the dict alone
    numbers = [int(v) if float(v).is_integer() else v for v in mask.coords]
    coords = [numbers[i:i + 2] for i in range(0, len(numbers), 2)] if mask.kind == "polygon" else numbers
    return {mask.kind: coords, "units": "fraction" if mask.fractional else "px"}
