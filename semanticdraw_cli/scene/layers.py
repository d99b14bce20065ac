"""Layered drawings (.psd, .ora) as scenes: each visible layer is a region, named by its prompt.

The file gives the canvas, the region masks (layer alpha) and the background picture; everything else
(model, sampler, defaults, per-region values) comes from settings: a sidecar `art.yaml` next to
`art.psd`, or the YAML scene that names the file under `layers:`. Defaults are resolved by
`scene.dicts.scene_from_dict`, as for any YAML scene.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import Problem, SceneError
from semanticdraw_cli.scene import control_layers
from semanticdraw_cli.scene.layered_files import Document, Layer, read_document
from semanticdraw_cli.outputs import atomic_path, check_output_name, prepare_folder, refuse_overwriting_inputs
from semanticdraw_cli.scene.reads import scene_reads
from semanticdraw_cli.scene.safe_io import SETTINGS, InputRefused, resolve_path
from semanticdraw_cli.scene.types import Mask, Scene
from semanticdraw_cli.scene.dicts import scene_from_dict, scene_to_dict
from semanticdraw_cli.scene.yaml_text import read_yaml

SIDECAR_SUFFIXES = (".yaml", ".yml")
DRAWING_SUFFIXES = (".psd", ".ora")
BACKGROUND_NAME = "background"
FROM_THE_FILE = ("canvas", "regions")  # settings may not set what the drawing decides
NOT_BY_NAME = ("name", "mask")  # fields `regions_by_name` may not set


@dataclasses.dataclass(frozen=True)
class _Region:
    name: str  # unique: a repeated layer name gets "-2", "-3", ...
    given: str  # the name as written, the key of `regions_by_name`
    prompt: str
    layer: Layer


@dataclasses.dataclass(frozen=True)
class _Split:
    """The drawing's layers sorted into a background picture and regions (bottom first)."""

    background: Layer | None
    background_prompt: str | None
    regions: tuple[_Region, ...]


def load_layered_scene(
    path: Path,
    overrides: Sequence[str] = (),
    settings: dict | None = None,
    settings_file: Path | None = None,
    allow_outside: bool = False,
) -> Scene:
    """Scene from a .psd/.ora drawing plus settings (given, or read from the sidecar YAML next to it).

    A background picture the settings name must lie in their folder or below, unless `allow_outside`.
    """
    path = Path(path)
    explicit = settings is not None
    if not explicit:
        settings, settings_file = read_sidecar(path, allow_outside)
    source = Path(settings_file) if settings_file is not None else path  # settings' paths are relative to it
    if not isinstance(settings, dict):
        what = type(settings).__name__
        raise SceneError([Problem(str(source), "", f"settings must be a mapping (model, sampler, ...), not {what}")])
    problems = _settings_problems(settings, source, path) + _override_problems(overrides, source)
    try:
        document, controls = control_layers.split(read_document(path), split_name)
        split = _split_layers(str(path), document)
    except SceneError as error:
        raise SceneError(problems + error.problems) from None
    problems += _unknown_region_names(settings, source, split)
    try:
        overrides_left = [o for o in overrides if not _fixed(o)]
        data = _scene_dict(settings, document, split)
        picked, control_problems = control_layers.mark(data, controls, split_name, str(path))
        problems += control_problems
        scene = _from_dict(data, source, overrides_left, allow_outside)
    except SceneError as error:
        raise SceneError(problems + [_translate(p, split, settings) for p in error.problems]) from None
    if split.background is not None and scene.background.image is not None:
        problems.append(Problem(str(source), "background.image", "the drawing has a background layer already"))
    if problems:
        raise SceneError(problems)
    name = source.stem if explicit and settings_file is not None else path.stem
    scene = control_layers.attach(scene, picked, lambda layer: _over_white(layer, document.width, document.height))
    return _attach_pixels(scene, document, split, name, path)


def read_sidecar(path: Path, allow_outside: bool = False) -> tuple[dict, Path | None]:
    """Settings from `art.yaml` (or `art.yml`) next to `art.psd`; none when neither exists.

    A sidecar that is a symlink must resolve inside the drawing's folder (the folder the drawing was
    named in, not a link target's), unless `allow_outside`, as any file a scene reads.
    """
    sidecar = sidecar_of(path)
    if sidecar is None:
        return {}, None
    check_beside(sidecar, allow_outside, "settings")
    return _read_yaml(sidecar), sidecar


def check_beside(file: Path, allow_outside: bool, what: str) -> None:
    """SceneError when `file`, found beside the file that implies it, resolves outside their folder."""
    folder = Path(os.path.abspath(file)).parent
    try:
        resolve_path(file.name, folder, confine=not allow_outside)
    except InputRefused as refused:
        raise SceneError([Problem(str(file), "", f"{refused.reason} (the scene's {what}, found beside it)",
                                  hint=refused.hint)]) from None


def sidecar_of(path: Path) -> Path | None:
    """The settings file of the drawing `path`: `art.yaml`, else `art.yml`, when there is one.

    A FIFO or a broken link counts as there too: the bounded reader then refuses it by name.
    """
    return next((path.with_suffix(s) for s in SIDECAR_SUFFIXES if os.path.lexists(path.with_suffix(s))), None)


def drawing_of(settings: Path) -> Path | None:
    """The drawing whose sidecar `settings` is (`art.psd` or `art.ora` beside `art.yaml`); None if none."""
    for suffix in DRAWING_SUFFIXES:
        drawing = settings.with_suffix(suffix)
        if drawing.is_file() and sidecar_of(drawing) == settings:
            return drawing
    return None


def split_name(layer_name: str) -> tuple[str, str]:
    """`name: prompt` splits at the first colon; a plain name is also the prompt."""
    name, colon, prompt = layer_name.partition(":")
    if not colon:
        return layer_name.strip(), layer_name.strip()
    name, prompt = name.strip(), prompt.strip()
    return name or prompt, prompt


def _read_yaml(file: Path) -> object:
    """Settings through the scene's YAML reader: the same byte, alias, nesting and value limits."""
    data, _, problems = read_yaml(file, SETTINGS)
    if problems:
        raise SceneError(problems)
    return {} if data is None else data


# --- settings ----------------------------------------------------------------------------------


def _settings_problems(settings: dict, file: Path, path: Path) -> list[Problem]:
    hint = "the canvas is the document size and each visible layer is a region; use regions_by_name"
    problems = [Problem(str(file), key, f"is decided by {path.name}", hint=hint) for key in FROM_THE_FILE if key in settings]
    layers = settings.get("layers")
    if layers is not None and (not isinstance(layers, str) or not _same_file(file.parent / layers, path)):
        problems.append(Problem(str(file), "layers", f"names {layers!r}, not {path.name}"))
    return problems + _by_name_problems(settings.get("regions_by_name"), file)


def _by_name_problems(by_name: object, file: Path) -> list[Problem]:
    """Each entry maps a region name to region fields other than name and mask (the rest checks the loader)."""
    if by_name is None:
        return []
    if not isinstance(by_name, dict):
        return [Problem(str(file), "regions_by_name", "must map layer names to region fields, e.g. {sun: {blur: 4}}")]
    problems = []
    for name, fields in by_name.items():
        key = f"regions_by_name.{name}"
        if not isinstance(fields, dict):
            problems.append(Problem(str(file), key, "must be a mapping of region fields, e.g. {blur: 4}"))
            continue
        problems += [Problem(str(file), f"{key}.{f}", "comes from the layer") for f in NOT_BY_NAME if f in fields]
    return problems


def _override_problems(overrides: Sequence[str], file: Path) -> list[Problem]:
    """`--set` may change anything but what the drawing decides: the canvas and the masks."""
    return [
        Problem(str(file), "--set", f"{text!r}: {text.partition('=')[0].strip()} comes from the drawing", hint="edit the drawing")
        for text in overrides
        if _fixed(text)
    ]


def _fixed(override: str) -> bool:
    key = override.partition("=")[0].strip()
    return re.match(r"canvas\b|regions(\[\d+\])?(\.mask\b.*)?$", key) is not None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except (OSError, ValueError, RuntimeError):  # RuntimeError: a symlink loop before Python 3.13
        return False


def _unknown_region_names(settings: dict, file: Path, split: _Split) -> list[Problem]:
    by_name = _usable_by_name(settings)
    known = sorted({region.given for region in split.regions})
    hint = "region names: " + ", ".join(known)
    return [Problem(str(file), f"regions_by_name.{name}", "no visible layer has this name", hint=hint)
            for name in by_name if name not in known]


# --- layers -> regions -------------------------------------------------------------------------


def _split_layers(file: str, document: Document) -> _Split:
    """Background: the layer named `background`, else the bottom layer when opaque over the canvas."""
    layers = document.layers
    named = [i for i, layer in enumerate(layers) if split_name(layer.name)[0].lower() == BACKGROUND_NAME]
    if len(named) > 1:
        where = ", ".join(repr(layers[i].where) for i in named)
        raise SceneError([Problem(file, "", f"{len(named)} layers are named background ({where})", hint="keep one")])
    index = named[0] if named else None
    if index is None and len(layers) > 1 and layers[0].covers(document.width, document.height):
        index = 0
    prompt = split_name(layers[index].name)[1] if named and ":" in layers[index].name else None
    regions = _regions([layer for i, layer in enumerate(layers) if i != index])
    problems = []
    if not regions:
        problems.append(Problem(file, "", "no visible layers besides the background", hint="add one layer per region"))
    if len(regions) > defaults.MAX_REGIONS:
        problems.append(Problem(file, "", f"{len(regions)} regions; at most {defaults.MAX_REGIONS} are allowed"))
    if problems:
        raise SceneError(problems)
    return _Split(layers[index] if index is not None else None, prompt or None, regions)


def _regions(layers: list[Layer]) -> tuple[_Region, ...]:
    """One region per layer; a repeated name (two `tree` layers) gets a number to stay unique."""
    given = [split_name(layer.name) for layer in layers]
    taken, regions = {name for name, _ in given}, []
    seen: set[str] = set()
    for (name, prompt), layer in zip(given, layers):
        name = name or "unnamed"
        unique, k = name, 2
        while unique in seen or (unique != name and unique in taken):
            unique, k = f"{name}-{k}", k + 1
        seen.add(unique)
        regions.append(_Region(unique, name, prompt, layer))
    return tuple(regions)


def _scene_dict(settings: dict, document: Document, split: _Split) -> dict:
    """A YAML-scene dict: settings plus the canvas, and regions whose masks are placeholders."""
    data = {k: v for k, v in settings.items() if k not in ("layers", "regions_by_name")}
    data["canvas"] = {"width": document.width, "height": document.height}
    by_name = _usable_by_name(settings)
    placeholder = {"rect": [0, 0, document.width, document.height]}  # replaced by the layer's alpha
    data["regions"] = [
        {"name": r.name, "prompt": r.prompt, **by_name.get(r.given, {}), "mask": placeholder} for r in split.regions
    ]
    if split.background_prompt is not None:  # the layer's name wins over background.prompt; --set over both
        background = data.get("background")
        data["background"] = {**(background if isinstance(background, dict) else {}), "prompt": split.background_prompt}
    return data


def _usable_by_name(settings: dict) -> dict[str, dict]:
    """The well-formed part of `regions_by_name` (the rest is reported already)."""
    by_name = settings.get("regions_by_name")
    if not isinstance(by_name, dict):
        return {}
    return {
        name: {k: v for k, v in fields.items() if k not in NOT_BY_NAME}
        for name, fields in by_name.items()
        if isinstance(fields, dict)
    }


def _from_dict(data: dict, source: Path, overrides: Sequence[str], allow_outside: bool) -> Scene:
    return scene_from_dict(data, source, overrides, allow_outside)


def _translate(problem: Problem, split: _Split, settings: dict) -> Problem:
    """`regions[2].blur` means little to someone who drew layers: name the layer or the settings entry."""
    match = re.match(r"regions\[(\d+)\](.*)$", problem.key)
    if not match or int(match[1]) >= len(split.regions):
        return problem
    region, rest = split.regions[int(match[1])], match[2]
    field = rest.lstrip(".").split(".")[0]
    if field in _usable_by_name(settings).get(region.given, {}):
        return dataclasses.replace(problem, key=f"regions_by_name.{region.given}{rest}")
    return dataclasses.replace(problem, key=f"layer {region.layer.where!r} ({problem.key})")


def _attach_pixels(scene: Scene, document: Document, split: _Split, name: str, path: Path) -> Scene:
    """Swap the placeholder masks for the layers' alpha and attach the background picture."""
    width, height = document.width, document.height
    regions = tuple(
        dataclasses.replace(region, mask=Mask(kind="array", array=r.layer.alpha_on_canvas(width, height)))
        for region, r in zip(scene.regions, split.regions, strict=True)
    )
    background = scene.background
    if split.background is not None:
        background = dataclasses.replace(background, image_array=_over_white(split.background, width, height))
    return dataclasses.replace(scene, name=name, source=path, regions=regions, background=background)


def _over_white(layer: Layer, width: int, height: int) -> np.ndarray:
    """The layer's colours over white where it is transparent, (H, W, 3) uint8."""
    out = np.full((height, width, 3), 255, np.uint8)
    if layer.rgba.size:
        left, top, right, bottom = layer.box
        rgb, alpha = layer.rgba[..., :3].astype(np.float32), layer.rgba[..., 3:].astype(np.float32) / 255
        out[top:bottom, left:right] = np.round(rgb * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return out


# --- import: a layered drawing -> a plain YAML scene with mask PNGs -------------------------------


def import_layered_scene(
    art: Path, output: Path, overrides: Sequence[str] = (), overwrite: bool = False, allow_outside: bool = False
) -> list[Path]:
    """Write `output` (YAML) and one mask PNG per region (plus the background) in `STEM-masks/` beside it."""
    art, output = Path(art), Path(output)
    check_output_name(output, SIDECAR_SUFFIXES)
    if _same_file(output.with_suffix(art.suffix), art):
        hint = f"choose another name: {art.stem}{output.suffix} holds the settings of {art.name}"
        raise SceneError([Problem(str(output), "", "would become the drawing's own sidecar", hint=hint)])
    scene = load_layered_scene(art, overrides, allow_outside=allow_outside)
    masks_dir = output.with_name(output.stem + "-masks")
    pictures = _mask_files(scene, masks_dir)
    stale = _stale_masks(masks_dir, set(pictures))
    refuse_overwriting_inputs([output, *pictures, *stale], scene_reads(art, scene))  # replaced or removed
    if masks_dir.exists() and not masks_dir.is_dir():
        raise SceneError([Problem(str(output), "", f"{masks_dir} is a file; the masks need a folder of that name")])
    taken = [p for p in (output, masks_dir) if p.exists()]
    if taken and not overwrite:
        where = " and ".join(str(p) for p in taken)
        verb = "exist" if len(taken) > 1 else "exists"
        raise SceneError([Problem(str(output), "", f"{where} {verb} already", hint="pass --overwrite to replace")])
    data = _imported_dict(scene, pictures)
    prepare_folder(masks_dir)
    for file, array in pictures.items():
        with atomic_path(file) as temporary:
            Image.fromarray(array).save(temporary, format="PNG")
    for file in stale:
        file.unlink(missing_ok=True)
    with atomic_path(output) as temporary:
        temporary.write_text(_yaml_text(data, art), encoding="utf-8")
    return [output, *pictures]


def _mask_files(scene: Scene, masks_dir: Path) -> dict[Path, np.ndarray]:
    """File name -> 8-bit picture: `NN-name.png` per region (bottom first), `background.png`."""
    digits = max(2, len(str(len(scene.regions))))
    pictures = {}
    for i, region in enumerate(scene.regions, start=1):
        gray = np.round(np.clip(region.mask.array, 0, 1) * 255).astype(np.uint8)  # (H, W)
        pictures[masks_dir / f"{i:0{digits}d}-{_slug(region.name)}.png"] = gray
    if scene.background.image_array is not None:
        pictures[masks_dir / "background.png"] = scene.background.image_array  # (H, W, 3)
    return pictures


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return slug or "region"


def _imported_dict(scene: Scene, pictures: dict[Path, np.ndarray]) -> dict:
    """The resolved scene as YAML data, masks and background pointing at the written pictures."""
    data = scene_to_dict(scene)
    files = [f"{p.parent.name}/{p.name}" for p in pictures]  # relative to the scene file
    for region, file in zip(data["regions"], files):
        region["mask"] = file
    if scene.background.image_array is not None:
        data["background"] = {**(data.get("background") or {}), "image": files[-1]}
    return data


def _yaml_text(data: dict, art: Path) -> str:
    import yaml

    head = f"# Imported from {art.name} by `semanticdraw import`; masks are bottom layer first.\n"
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)


def _stale_masks(masks_dir: Path, keep: set[Path]) -> list[Path]:
    """Masks of an earlier import that no longer match a region (only files this command writes)."""
    return [file for file in masks_dir.glob("*.png")
            if file not in keep and (re.fullmatch(r"\d+-.*\.png", file.name) or file.name == "background.png")]
