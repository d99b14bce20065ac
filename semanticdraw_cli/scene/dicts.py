"""Scenes as plain dicts: validating a dict into a Scene (with `--set` overrides), and the way back.

Shared by the YAML loader and the layered-file loader, which builds a scene dict from a drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from semanticdraw_cli.errors import Problem, SceneError
from semanticdraw_cli.scene import controls
from semanticdraw_cli.scene.types import Hires, Region, Scene
from semanticdraw_cli.scene.schema import build_scene
from semanticdraw_cli.scene.yaml_text import apply_overrides, deep_copy


def scene_from_dict(
    data: dict, source: Path | None, overrides: Sequence[str] = (), allow_outside: bool = False
) -> Scene:
    """Validate a raw scene dict (paths relative to `source`'s folder) into a Scene; SceneError lists all problems."""
    return build_from_dict(data, Path(source) if source is not None else None, {}, overrides, (), allow_outside)


def scene_to_dict(scene: Scene) -> dict:
    """The resolved scene as a version-1 scene dict: absolute paths, every field explicit."""
    s, m = scene.sampler, scene.model
    acc = m.accelerator
    accelerator = acc.name if acc.name != "lora" else {
        "lora": acc.lora, "weight": acc.weight, "weight_name": acc.weight_name, "scheduler": acc.scheduler,
    }
    return {
        "version": scene.version,
        "canvas": {"width": scene.canvas.width, "height": scene.canvas.height,
                   **({"wrap": scene.canvas.wrap} if scene.canvas.wrap != "none" else {})},
        "model": {"family": m.family, "checkpoint": m.checkpoint, "accelerator": accelerator, "drop_t5": m.drop_t5,
                  "offload": m.offload, **({"text_tokens": m.text_tokens} if m.text_tokens is not None else {}),
                  **({"preview_decoder": m.preview_decoder} if m.preview_decoder is not None else {})},
        "sampler": {
            "method": s.method, "steps": list(s.steps), "grid": s.grid, "guidance": s.guidance, "seed": s.seed,
            "images": s.images, "mask_mode": s.mask_mode, "plan": s.plan, "cover_alpha": s.cover_alpha,
            "max_batch": s.max_batch, "compile": s.compile, "fuse_qkv": s.fuse_qkv, "channels_last": s.channels_last,
            "tile": {"size": s.tile.size, "stride": s.tile.stride},
            "bootstrap": {"steps": s.bootstrap.steps, "mix": s.bootstrap.mix,
                          "leak_sensitivity": s.bootstrap.leak_sensitivity},
        },
        "background": {
            "prompt": scene.background.prompt, "negative": scene.background.negative,
            "image": str(scene.background.image) if scene.background.image is not None else None,
        },
        "regions": [
            {"name": r.name, "prompt": r.prompt, "negative": r.negative, "blur": r.blur, "strength": r.strength,
             "prompt_strength": r.prompt_strength, "mask": _mask_to_dict(r), "min_score": r.min_score,
             **_reference_to_dict(r), **_region_sampling(r),
             **({"control": controls.to_dicts(r.control)} if r.control else {}),
             **({"loras": [vars(lora) for lora in r.loras]} if r.loras else {})}
            for r in scene.regions
        ],
        "quality": {"min_region_score": scene.quality.min_region_score,
                    "min_background_score": scene.quality.min_background_score},
        **({"hires": _hires_to_dict(scene.hires)} if scene.hires is not None else {}),
        **({"reroll": {"from": str(scene.reroll.image), "regions": list(scene.reroll.regions)}} if scene.reroll else {}),
        **({"control": controls.to_dicts(scene.control)} if scene.control else {}),
    }


def build_from_dict(
    data: object, source: Path | None, lines: dict[str, int], overrides: Sequence[str], problems: Sequence[Problem] = (),
    allow_outside: bool = False,
) -> Scene:
    """`build_scene` of a copy of `data` with the `--set` overrides applied."""
    file = str(source) if source is not None else "<scene>"
    if not isinstance(data, dict):
        raise SceneError([Problem(file, "", f"expected a mapping of keys, got {type(data).__name__}")])
    data = deep_copy(data)
    overridden, override_problems = apply_overrides(data, overrides, file)
    return build_scene(data, source, lines, overridden, [*problems, *override_problems], allow_outside)


def _reference_to_dict(region: Region) -> dict:
    """The region's `reference` entry; none without one, so scenes without references read as before."""
    ref = region.reference
    return {} if ref is None else {"reference": {"image": str(ref.image), "weight": ref.weight, "adapter": ref.adapter}}


def _hires_to_dict(hires: Hires) -> dict:
    """Pass 2's steps as indices when they index the sampler's grid, else as the plain count they came from."""
    plain = hires.steps == tuple(range(hires.grid))
    return {"scale": hires.scale, "strength": hires.strength, "steps": hires.grid if plain else list(hires.steps),
            "upscaler": hires.upscaler}


def _region_sampling(region: Region) -> dict:
    """A region's own seed and guidance scale, written only when set (older scenes' dicts stay as they were)."""
    own = {"seed": region.seed, "guidance": region.guidance}
    return {key: value for key, value in own.items() if value is not None}


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
