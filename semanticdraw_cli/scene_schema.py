"""The version-1 scene format as checks: typed reads of a raw dict, limits, defaults, one Problem per fault."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semanticdraw_cli import defaults as D
from semanticdraw_cli.errors import MaskError, Problem, SceneError
from semanticdraw_cli.families import registry
from semanticdraw_cli.rasterize import load_rgb, rasterize_mask
from semanticdraw_cli.scene import Accelerator, Background, Bootstrap, Canvas, Mask, Model, Region, Sampler, Scene, Tile

UNITS = ("px", "fraction")
SHAPES = {"rect": 4, "ellipse": 4, "polygon": None}  # coordinate count; polygon: pairs, at least 3
MASK_KINDS = ("image", "label_map", *SHAPES, "layer")
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed accepts 64-bit seeds
FAMILY_OPTIONS = tuple(dict.fromkeys(option for spec in registry.families().values() for option in spec.options))
KEYS = {
    "": ("version", "canvas", "model", "sampler", "background", "defaults", "regions", "layers"),
    "canvas": ("width", "height"),
    "model": ("family", "checkpoint", "accelerator", *FAMILY_OPTIONS),
    "model.accelerator": ("lora", "weight", "weight_name"),
    "sampler": ("method", "steps", "grid", "guidance", "seed", "images", "bootstrap", "mask_mode", "tile",
                "plan", "cover_alpha", "max_batch", "compile", "fuse_qkv", "channels_last"),
    "sampler.bootstrap": ("steps", "mix", "leak_sensitivity"),
    "sampler.tile": ("size", "stride"),
    "background": ("prompt", "negative", "image"),
    "defaults": ("negative", "blur", "strength", "prompt_strength"),
    "regions[]": ("name", "prompt", "negative", "blur", "strength", "prompt_strength", "mask"),
    "mask": (*MASK_KINDS, "color", "units"),
}


# --- checks --------------------------------------------------------------------------------


class _Checker:
    """Reads typed values out of raw dicts, recording a Problem (with the key's line) for each bad one."""

    def __init__(self, file: str, lines: dict[str, int], overridden: Sequence[str]):
        self.file, self.lines, self.overridden = file, lines, tuple(overridden)
        self.problems: list[Problem] = []

    def add(self, key: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.file, key, message, self._line(key), hint))

    def _line(self, key: str) -> int | None:
        if any(key == o or key.startswith((o + ".", o + "[")) for o in self.overridden):
            return None  # the value came from --set, not from the file
        while key:
            if self.lines.get(key) is not None:
                return self.lines[key]
            key = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", key) if re.search(r"[.\[]", key) else ""
        return None

    def section(self, value: object, key: str, allowed: Sequence[str]) -> dict:
        """A mapping (absent: empty); unknown keys get a did-you-mean hint."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(key, f"expected a mapping, got {_describe(value)}")
            return {}
        for name in value:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(allowed)
                self.add(f"{key}.{name}" if key else str(name), f"unknown key {name!r}", hint)
        return value

    def integer(self, d: dict, name: str, key: str, default, lo: int | None = None, hi: int | None = None):
        value = d.get(name)
        if value is None:
            return default
        if not _is_int(value):
            self.add(key, f"expected a whole number, got {_describe(value)}")
            return default
        return value if self._in_range(key, value, lo, hi) else default

    def number(self, d: dict, name: str, key: str, default, lo=None, hi=None, above: float | None = None):
        value = d.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.add(key, f"expected a number, got {_describe(value)}")
            return default
        if above is not None and value <= above:
            self.add(key, f"must be greater than {above}, got {value}")
            return default
        return float(value) if self._in_range(key, value, lo, hi) else default

    def _in_range(self, key: str, value, lo, hi) -> bool:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = f"between {lo} and {hi}" if lo is not None and hi is not None else (
                f"at least {lo}" if lo is not None else f"at most {hi}")
            self.add(key, f"must be {span}, got {value}")
            return False
        return True

    def text(self, d: dict, name: str, key: str, default):
        value = d.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            self.add(key, f"expected text, got {_describe(value)}", hint="put it in quotes")
            return default
        return value

    def flag(self, d: dict, name: str, key: str, default: bool) -> bool:
        value = d.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(key, f"expected true or false, got {_describe(value)}")
            return default
        return value

    def choice(self, d: dict, name: str, key: str, choices: Sequence[str], default: str) -> str:
        value = d.get(name)
        if value is None:
            return default
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + "choose one of " + ", ".join(choices)
            self.add(key, f"unknown value {value!r}", hint)
            return default
        return value


def build_scene(
    data: dict, source: Path | None, lines: dict[str, int], overridden: Sequence[str], problems: Sequence[Problem] = ()
) -> Scene:
    """The Scene of a raw dict, or SceneError with every problem (plus `problems` found before)."""
    file = str(source) if source is not None else "<scene>"
    c = _Checker(file, lines, overridden)
    c.problems += problems
    base = source.resolve().parent if source is not None else Path.cwd()
    top = c.section(data, "", KEYS[""])
    version = top.get("version")
    if version is not None and (version != D.SCENE_VERSION or isinstance(version, bool)):
        c.add("version", f"unsupported version {version!r}", hint=f"this tool reads version {D.SCENE_VERSION}")
    canvas = _canvas(c, top)
    sampler_data = top.get("sampler") if isinstance(top.get("sampler"), dict) else {}
    classic = sampler_data.get("method") == "multidiffusion"
    model = _model(c, c.section(top.get("model"), "model", KEYS["model"]), base, classic)
    sampler = _sampler(c, c.section(top.get("sampler"), "sampler", KEYS["sampler"]), model)
    d = c.section(top.get("defaults"), "defaults", KEYS["defaults"])
    fields = {
        "negative": c.text(d, "negative", "defaults.negative", D.NEGATIVE),
        "blur": c.number(d, "blur", "defaults.blur", D.BLUR, lo=0),
        "strength": c.number(d, "strength", "defaults.strength", D.STRENGTH, lo=0, hi=1),
        "prompt_strength": c.number(d, "prompt_strength", "defaults.prompt_strength", D.PROMPT_STRENGTH, lo=0, hi=1),
    }
    _family_multiple(c, model.family, canvas, sampler.tile)
    background = _background(c, c.section(top.get("background"), "background", KEYS["background"]), fields, base, canvas)
    regions = _regions(c, top.get("regions"), fields, base, canvas)
    if c.problems:
        raise SceneError(c.problems)
    name = source.stem if source is not None else "scene"
    return Scene(name, canvas, model, sampler, background, regions, source, D.SCENE_VERSION)


def _canvas(c: _Checker, top: dict) -> Canvas | None:
    if "canvas" not in top:
        c.add("canvas", "missing", hint="every scene needs one, e.g. canvas: {width: 1024, height: 768}")
        return None
    d = c.section(top["canvas"], "canvas", KEYS["canvas"])
    sides = [_side(c, d, name) for name in ("width", "height")]
    if None in sides:
        return None
    width, height = sides
    if width * height > D.MAX_CANVAS_PIXELS:
        c.add("canvas", f"{width}×{height} = {width * height:,} pixels is over the limit of {D.MAX_CANVAS_PIXELS:,}",
              hint="render a smaller canvas and upscale it")
        return None
    return Canvas(width, height)


def _side(c: _Checker, d: dict, name: str) -> int | None:
    key, value, m = f"canvas.{name}", d.get(name), D.CANVAS_MULTIPLE
    if value is None:
        c.add(key, "missing", hint=f"canvas: {{width: ..., height: ...}} in pixels, multiples of {m}")
    elif not _is_int(value):
        c.add(key, f"expected a whole number of pixels, got {_describe(value)}")
    elif value <= 0:
        c.add(key, f"must be positive, got {value}")
    elif value > D.MAX_CANVAS_SIDE:
        c.add(key, f"{value} is over the limit of {D.MAX_CANVAS_SIDE} pixels", hint="render smaller and upscale")
    elif value % m:
        c.add(key, f"{value} is not a multiple of {m}", hint=_nearest(value))
    else:
        return value
    return None


def _model(c: _Checker, d: dict, base: Path, classic: bool) -> Model:
    """Classic MultiDiffusion defaults to no accelerator (the base model with DDIM), as published."""
    families = registry.families()
    family = c.choice(d, "family", "model.family", tuple(families), D.FAMILY)
    checkpoint = c.text(d, "checkpoint", "model.checkpoint", families[family].checkpoint)
    checkpoint = _reference(c, checkpoint, base, "model.checkpoint")
    accelerator = d.get("accelerator")
    if accelerator is None:
        accelerator = "none" if classic else families[family].accelerator
    accelerator = _accelerator(c, accelerator, family, base)
    for option in FAMILY_OPTIONS:
        if d.get(option) and option not in families[family].options:  # false or absent is the same
            having = [name for name, spec in families.items() if option in spec.options]
            c.add(f"model.{option}", f"applies to {' and '.join(having)} only, the family is {family}", hint="remove it")
    drop_t5 = c.flag(d, "drop_t5", "model.drop_t5", False)
    return Model(family, checkpoint, accelerator, drop_t5)


def _accelerator(c: _Checker, value: object, family: str, base: Path) -> Accelerator:
    key = "model.accelerator"
    if isinstance(value, dict):
        d = c.section(value, key, KEYS[key])
        lora = c.text(d, "lora", f"{key}.lora", None)
        if not lora:
            c.add(f"{key}.lora", "missing", hint="{lora: hub-id-or-path, weight: 1.0}")
        weight = c.number(d, "weight", f"{key}.weight", D.LORA_WEIGHT)
        weight_name = c.text(d, "weight_name", f"{key}.weight_name", None)
        return Accelerator("lora", _reference(c, lora, base, f"{key}.lora") if lora else lora, weight_name, weight)
    if value == "none":
        return Accelerator("none")
    accelerators = registry.accelerators()
    if not isinstance(value, str) or value not in accelerators:
        names = (*accelerators, "none")
        close = difflib.get_close_matches(str(value), names, n=1)
        hint = (f"did you mean {close[0]!r}? " if close else "") + "choose one of " + ", ".join(names)
        c.add(key, f"unknown accelerator {value!r}", hint + ", or {lora: id-or-path, weight: 1.0}")
        return Accelerator("none")
    spec, owner = accelerators[value], registry.accelerator_family(value)
    if owner != family:
        fits = [*registry.family(family).accelerators, "none"]
        c.add(key, f"{value} is an accelerator for {owner}, not {family}", hint="use " + " or ".join(fits))
    return Accelerator(value, spec.lora, spec.weight_name, D.LORA_WEIGHT)


def _reference(c: _Checker, text: str, base: Path, key: str) -> str:
    """A hub id or preset name stays as it is; a local path becomes absolute against the scene's folder.

    A missing model is a runtime failure (exit 1, with what to do), reported when the model loads.
    """
    if not text.strip():
        c.add(key, "is empty", hint="a hub id, a local folder or a .safetensors file")
        return text
    local = base / Path(text).expanduser()
    if local.exists() or text.startswith(("/", "./", "../", "~")) or text.endswith(D.WEIGHT_FILE_SUFFIXES):
        return str(local.resolve())
    return text


def _sampler(c: _Checker, d: dict, model: Model) -> Sampler:
    method = c.choice(d, "method", "sampler.method", D.METHODS, D.METHOD)
    family, acc = registry.family(model.family), model.accelerator
    spec = registry.accelerators().get(acc.name)
    if method == "multidiffusion":
        tile = (D.MULTIDIFFUSION_TILE_SIZE, D.MULTIDIFFUSION_TILE_STRIDE)
        if spec is not None:  # "MD + LCM": the classic algorithm with the accelerator's steps
            steps, grid, guidance = spec.steps, spec.grid, spec.guidance
        else:  # as published: DDIM 50 steps, guidance 7.5
            steps, grid, guidance = D.MULTIDIFFUSION_STEPS, D.MULTIDIFFUSION_STEPS, D.MULTIDIFFUSION_GUIDANCE
    else:
        if spec is not None:
            steps, grid, guidance = spec.steps, spec.grid, spec.guidance
        else:  # `none` or a custom LoRA: the checkpoint's own scheduler (e.g. a merged accelerator)
            steps, grid = family.own_scheduler_steps, family.own_scheduler_grid
            guidance = family.accelerators[family.accelerator].guidance
        tile = (family.tile_size, family.tile_stride)
    steps, grid = _steps(c, d, steps, grid)
    b = c.section(d.get("bootstrap"), "sampler.bootstrap", KEYS["sampler.bootstrap"])
    bootstrap = Bootstrap(
        c.integer(b, "steps", "sampler.bootstrap.steps", D.BOOTSTRAP_STEPS, lo=0),
        c.number(b, "mix", "sampler.bootstrap.mix", D.BOOTSTRAP_MIX, lo=0),
        c.number(b, "leak_sensitivity", "sampler.bootstrap.leak_sensitivity", D.BOOTSTRAP_LEAK_SENSITIVITY, above=0),
    )
    return Sampler(
        method=method, steps=steps, grid=grid,
        guidance=c.number(d, "guidance", "sampler.guidance", guidance, lo=0),
        seed=c.integer(d, "seed", "sampler.seed", D.SEED, lo=0, hi=MAX_SEED),
        images=c.integer(d, "images", "sampler.images", D.IMAGES, lo=1, hi=D.MAX_IMAGES),
        bootstrap=bootstrap,
        mask_mode=c.choice(d, "mask_mode", "sampler.mask_mode", D.MASK_MODES, D.MASK_MODE),
        tile=_tile(c, c.section(d.get("tile"), "sampler.tile", KEYS["sampler.tile"]), *tile),
        plan=c.choice(d, "plan", "sampler.plan", D.PLANS, D.PLAN),
        cover_alpha=c.number(d, "cover_alpha", "sampler.cover_alpha", D.COVER_ALPHA, lo=0, hi=1),
        max_batch=_max_batch(c, d.get("max_batch")) if isinstance(d.get("max_batch"), str)
        else c.integer(d, "max_batch", "sampler.max_batch", D.MAX_BATCH, lo=1),
        compile=c.flag(d, "compile", "sampler.compile", D.COMPILE) if not isinstance(d.get("compile"), str)
        else c.choice(d, "compile", "sampler.compile", D.COMPILE_MODES, D.COMPILE),
        fuse_qkv=c.flag(d, "fuse_qkv", "sampler.fuse_qkv", D.FUSE_QKV),
        channels_last=c.flag(d, "channels_last", "sampler.channels_last", D.CHANNELS_LAST),
    )


def _max_batch(c: _Checker, value: str) -> str:
    if value != "auto":
        c.add("sampler.max_batch", f"expected auto or a whole number, got {_describe(value)}")
    return "auto"


def _steps(c: _Checker, d: dict, default_steps, default_grid: int) -> tuple[tuple[int, ...], int]:
    """A list of increasing indices into a `grid`-step schedule, or a plain count N (grid N)."""
    grid = c.integer(d, "grid", "sampler.grid", None, lo=1, hi=D.MAX_GRID)
    value = d.get("steps")
    value = list(default_steps) if value is None and isinstance(default_steps, tuple) else value
    value = default_steps if value is None else value
    if _is_int(value):
        if not 1 <= value <= D.MAX_GRID:
            c.add("sampler.steps", f"must be between 1 and {D.MAX_GRID}, got {value}")
            return (0,), 1
        if grid is not None and grid != value:
            c.add("sampler.grid", f"is {grid} but steps is the plain count {value}, which means a {value}-step grid",
                  hint=f"give steps as indices into the {grid}-step grid, e.g. [0, {grid // 2}]")
        return tuple(range(value)), value
    grid = grid if grid is not None else default_grid
    if not isinstance(value, list) or not value or not all(_is_int(v) for v in value):
        c.add("sampler.steps", f"expected a count or a list of step indices, got {_describe(value)}",
              hint="e.g. steps: 4 or steps: [0, 4, 12, 25, 37]")
        return (0,), max(grid, 1)
    for before, after in zip(value, value[1:]):
        if after <= before:
            c.add("sampler.steps", f"indices must increase: {after} comes after {before}")
            return (0,), grid
    if value[0] < 0 or value[-1] >= grid:
        c.add("sampler.steps", f"indices must lie in [0, {grid}) of the {grid}-step grid, got {value}",
              hint="set sampler.grid to index a longer schedule")
    return tuple(value), grid


def _family_multiple(c: _Checker, family: str, canvas: Canvas | None, tile: Tile) -> None:
    """Families whose model reads latent patches need canvas and windows in multiples of the patch."""
    m = registry.family(family).pixel_multiple
    if m == D.CANVAS_MULTIPLE:
        return
    sides = [("sampler.tile.size", tile.size), ("sampler.tile.stride", tile.stride)]
    if canvas is not None:
        sides = [("canvas.width", canvas.width), ("canvas.height", canvas.height)] + sides
    for key, value in sides:
        if value % m:
            c.add(key, f"{value} is not a multiple of {m}, which the {family} family needs", hint=_nearest(value, m))


def _tile(c: _Checker, d: dict, size: int, stride: int) -> Tile:
    m = D.CANVAS_MULTIPLE
    size = c.integer(d, "size", "sampler.tile.size", size, lo=m, hi=D.MAX_CANVAS_SIDE)
    stride = c.integer(d, "stride", "sampler.tile.stride", stride, lo=m, hi=D.MAX_CANVAS_SIDE)
    for name, value in (("size", size), ("stride", stride)):
        if value % m:
            c.add(f"sampler.tile.{name}", f"{value} is not a multiple of {m}", hint=_nearest(value))
    if stride > size:
        c.add("sampler.tile.stride", f"{stride} is larger than the tile size {size}", hint="windows would leave gaps")
    return Tile(size, stride)


def _background(c: _Checker, d: dict, fields: dict, base: Path, canvas: Canvas | None) -> Background:
    prompt = c.text(d, "prompt", "background.prompt", None)
    negative = c.text(d, "negative", "background.negative", fields["negative"])
    image = c.text(d, "image", "background.image", None)
    path = (base / Path(image).expanduser()).resolve() if image else None
    if path is not None:
        _check_file(c, "background.image", path, canvas, lambda: load_rgb(path, canvas))
    return Background(prompt, negative, path)


def _check_file(c: _Checker, key: str, path: Path, canvas: Canvas | None, read) -> None:
    """Read the picture now (exists, decodes, fits the canvas, holds the colour); only existence without a canvas."""
    if canvas is None:
        if not path.is_file():
            c.add(key, f"file not found: {path}", hint="paths are relative to the scene file's folder")
        return
    try:
        read()
    except MaskError as error:
        c.add(key, str(error), error.hint)


def _regions(c: _Checker, value: object, fields: dict, base: Path, canvas: Canvas | None) -> tuple[Region, ...]:
    if value is None:
        c.add("regions", "missing", hint="regions: [{prompt: a red fox, mask: {rect: [0, 0, 256, 256]}}]")
        return ()
    if not isinstance(value, list) or not value:
        what = "no regions" if isinstance(value, list) else f"expected a list of regions, got {_describe(value)}"
        c.add("regions", what, hint="add at least one {prompt: ..., mask: ...}")
        return ()
    if len(value) > D.MAX_REGIONS:
        c.add("regions", f"{len(value)} regions; at most {D.MAX_REGIONS} are allowed", hint="merge regions")
        return ()
    regions, names = [], {}
    for i, raw in enumerate(value):
        key = f"regions[{i}]"
        d = c.section(raw, key, KEYS["regions[]"]) if isinstance(raw, dict) else None
        if d is None:
            c.add(key, f"expected a mapping {{prompt: ..., mask: ...}}, got {_describe(raw)}")
            continue
        name = c.text(d, "name", f"{key}.name", f"region{i + 1}")
        if name in names:
            c.add(f"{key}.name", f"{name!r} is also the name of regions[{names[name]}]", hint="names must be unique")
        names.setdefault(name, i)
        prompt = c.text(d, "prompt", f"{key}.prompt", None)
        if not prompt or not prompt.strip():
            c.add(f"{key}.prompt", "missing" if prompt is None else "is empty", hint="say what to paint here")
        mask = _mask(c, d.get("mask"), f"{key}.mask", base)
        if mask is not None and mask.kind in ("image", "label_map"):
            _check_file(c, f"{key}.mask", mask.path, canvas, lambda mask=mask: rasterize_mask(mask, canvas))
        regions.append(Region(
            name=name, prompt=prompt or "", negative=c.text(d, "negative", f"{key}.negative", fields["negative"]),
            mask=mask or Mask("rect"), blur=c.number(d, "blur", f"{key}.blur", fields["blur"], lo=0),
            strength=c.number(d, "strength", f"{key}.strength", fields["strength"], lo=0, hi=1),
            prompt_strength=c.number(d, "prompt_strength", f"{key}.prompt_strength", fields["prompt_strength"],
                                     lo=0, hi=1),
        ))
    return tuple(regions)


def _mask(c: _Checker, value: object, key: str, base: Path) -> Mask | None:
    if isinstance(value, str) and value:
        return Mask("image", path=(base / Path(value).expanduser()).resolve())
    if not isinstance(value, dict):
        got = "missing" if value is None else f"expected a mask source, got {_describe(value)}"
        c.add(key, got, hint="e.g. mask: {ellipse: [cx, cy, rx, ry]}, mask: {polygon: [[x, y], ...]} or mask: mask.png")
        return None
    d = c.section(value, key, KEYS["mask"])
    kinds = [k for k in MASK_KINDS if k in d]
    if len(kinds) != 1:
        found = "none" if not kinds else ", ".join(kinds)
        c.add(key, f"give exactly one of image, label_map, rect, ellipse, polygon (found {found})")
        return None
    kind = kinds[0]
    if "color" in d and kind != "label_map":
        c.add(f"{key}.color", "applies to label_map masks only")
    if "units" in d and kind not in SHAPES:
        c.add(f"{key}.units", "applies to rect, ellipse and polygon masks only")
    if kind == "layer":
        c.add(f"{key}.layer", "layer masks come from a layered drawing", hint="load the .psd/.ora file itself")
        return None
    if kind in ("image", "label_map"):
        path = c.text(d, kind, f"{key}.{kind}", None)
        if not path:
            c.add(f"{key}.{kind}", "expected the path of a picture")
            return None
        color = _color(c, d.get("color"), f"{key}.color") if kind == "label_map" else None
        resolved = (base / Path(path).expanduser()).resolve()
        return Mask(kind, path=resolved, color=color) if kind == "image" or color else None
    units = c.choice(d, "units", f"{key}.units", UNITS, UNITS[0])
    coords = _coords(c, kind, d[kind], f"{key}.{kind}")
    return Mask(kind, coords=coords, fractional=units == "fraction") if coords else None


def _coords(c: _Checker, kind: str, value: object, key: str) -> tuple[float, ...] | None:
    syntax = {"rect": "[x, y, width, height]", "ellipse": "[cx, cy, rx, ry]", "polygon": "[[x, y], [x, y], [x, y], ...]"}
    if kind == "polygon":
        points = value if isinstance(value, list) else None
        if points is None or not all(isinstance(p, list) and len(p) == 2 for p in points):
            c.add(key, f"expected a list of [x, y] points, got {_describe(value)}", hint=f"{kind}: {syntax[kind]}")
            return None
        if len(points) < 3:
            c.add(key, f"a polygon needs at least 3 points, got {len(points)}", hint=f"{kind}: {syntax[kind]}")
            return None
        flat = [v for p in points for v in p]
    else:
        if not isinstance(value, list) or len(value) != SHAPES[kind]:
            c.add(key, f"expected {syntax[kind]}, got {_describe(value)}")
            return None
        flat = value
    if not all(_is_number(v) for v in flat):
        c.add(key, f"coordinates must be finite numbers, got {_describe(value)}", hint=f"{kind}: {syntax[kind]}")
        return None
    if kind != "polygon" and min(flat[2:]) <= 0:
        what = "width and height" if kind == "rect" else "radii"
        c.add(key, f"{what} must be positive, got {_describe(value)}")
        return None
    return tuple(float(v) for v in flat)


def _color(c: _Checker, value: object, key: str) -> tuple[int, int, int] | None:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value.strip()):
        text = value.strip()
        return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
    if isinstance(value, list) and len(value) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in value):
        return tuple(value)
    if value is None:
        c.add(key, "missing: a label_map mask needs the colour of its region",
              hint='color: "#f59e0b" in quotes (an unquoted # starts a YAML comment) or color: [245, 158, 11]')
    else:
        c.add(key, f"expected \"#rrggbb\" or [r, g, b] (0-255), got {_describe(value)}")
    return None


# --- small helpers -----------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _nearest(value: int, m: int = D.CANVAS_MULTIPLE) -> str:
    low = value - value % m
    return f"{value} -> {low} or {low + m}" if low > 0 else f"{value} -> {low + m}"


def _describe(value: object) -> str:
    kinds = {bool: "true/false", int: "number", float: "number", str: "text", list: "list", dict: "mapping"}
    text = repr(value) if not isinstance(value, bool) else str(value).lower()
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({kinds.get(type(value), type(value).__name__)})" if value is not None else "nothing"
