"""The version-1 scene format as checks: typed reads of a raw dict, limits, defaults, one Problem per fault."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from semanticdraw_cli import defaults as D
from semanticdraw_cli.errors import Problem, SceneError
from semanticdraw_cli.families import registry
from semanticdraw_cli.scene import controls
from semanticdraw_cli.scene.rasterize import load_rgb, rasterize_mask
from semanticdraw_cli.scene import loras as region_loras
from semanticdraw_cli.scene.types import (
    Background, Bootstrap, Canvas, Mask, Model, Quality, Region, Sampler, Scene, Tile,
)
from semanticdraw_cli.scene.checks import Checker as _Checker
from semanticdraw_cli.scene.checks import describe as _describe
from semanticdraw_cli.scene.checks import is_int as _is_int
from semanticdraw_cli.scene.checks import nearest as _nearest
from semanticdraw_cli.scene.checks import check_mask_memory
from semanticdraw_cli.scene.checks import show as _show
from semanticdraw_cli.scene.sources import MASK_KEYS, check_picture, mask_source, path_field
from semanticdraw_cli.scene.reference import check_references, reference_field
from semanticdraw_cli.scene.model_fields import ACCELERATOR_KEYS, FAMILY_OPTIONS, model_section
from semanticdraw_cli.scene import composition
from semanticdraw_cli.scene.reroll_fields import reroll_section

KEYS = {
    "": ("version", "canvas", "model", "sampler", "background", "defaults", "regions", "layers", "quality", "hires",
         "reroll", "control"),
    "canvas": ("width", "height", "wrap"),
    "model": ("family", "checkpoint", "accelerator", "offload", "preview_decoder", *FAMILY_OPTIONS),
    "model.accelerator": ACCELERATOR_KEYS,
    "sampler": ("method", "steps", "grid", "guidance", "seed", "images", "bootstrap", "mask_mode", "tile",
                "plan", "cover_alpha", "max_batch", "compile", "fuse_qkv", "channels_last"),
    "sampler.bootstrap": ("steps", "mix", "leak_sensitivity"),
    "sampler.tile": ("size", "stride"),
    "background": ("prompt", "negative", "image"),
    "defaults": ("negative", "blur", "strength", "prompt_strength", "loras"),
    "regions[]": ("name", "prompt", "negative", "blur", "strength", "prompt_strength", "mask", "min_score", "reference",
                  "seed", "guidance", "control", "loras"),
    "mask": MASK_KEYS,
    "quality": ("min_region_score", "min_background_score"),
}


def build_scene(
    data: dict, source: Path | None, lines: dict[str, int], overridden: Sequence[str], problems: Sequence[Problem] = (),
    allow_outside: bool = False,
) -> Scene:
    """The Scene of a raw dict, or SceneError with every problem (plus `problems` found before).

    Pictures must lie in the scene file's folder or below it (the working folder without a file),
    symlinks followed, unless `allow_outside`: scenes come from other people.
    """
    file = str(source) if source is not None else "<scene>"
    c = _Checker(file, lines, overridden, allow_outside)
    c.problems += problems
    base = Path(os.path.abspath(source)).parent if source is not None else Path.cwd()  # a link's folder, not its target's
    top = c.section(data, "", KEYS[""])
    version = top.get("version")
    if version is not None and (version != D.SCENE_VERSION or isinstance(version, bool)):
        c.add("version", f"unsupported version {version!r}", hint=f"this tool reads version {D.SCENE_VERSION}")
    canvas = _canvas(c, top)
    sampler_data = top.get("sampler") if isinstance(top.get("sampler"), dict) else {}
    classic = sampler_data.get("method") == "multidiffusion"
    model = model_section(c, c.section(top.get("model"), "model", KEYS["model"]), base, classic)
    sampler = _sampler(c, c.section(top.get("sampler"), "sampler", KEYS["sampler"]), model)
    d = c.section(top.get("defaults"), "defaults", KEYS["defaults"])
    fields = {
        "negative": c.text(d, "negative", "defaults.negative", D.NEGATIVE),
        "blur": c.number(d, "blur", "defaults.blur", D.BLUR, lo=0, hi=D.MAX_BLUR),
        "strength": c.number(d, "strength", "defaults.strength", D.STRENGTH, lo=0, hi=1),
        "prompt_strength": c.number(d, "prompt_strength", "defaults.prompt_strength", D.PROMPT_STRENGTH, lo=0, hi=1),
        "loras": region_loras.parse(c, d.get("loras"), "defaults.loras", base, ()),
    }
    _family_multiple(c, model.family, canvas, sampler.tile)
    canvas = composition.with_wrap(c, top.get("canvas"), canvas, sampler.tile.size)
    hires = composition.hires(c, top, canvas, sampler, registry.family(model.family).pixel_multiple)
    background = _background(c, c.section(top.get("background"), "background", KEYS["background"]), fields, base, canvas)
    regions = _regions(c, top.get("regions"), fields, base, canvas)
    check_references(c, regions, model)
    region_loras.check(c, regions, model.family, region_loras.network_config(model.family, model.checkpoint))
    quality = _quality(c, c.section(top.get("quality"), "quality", KEYS["quality"]))
    regions, control = controls.attach(c, top, regions, base, canvas, model.family)
    reroll = reroll_section(c, top.get("reroll"), base, regions, canvas)
    if canvas is not None and regions and not c.problems:
        check_mask_memory(c, canvas, len(regions), len(sampler.steps))
    if c.problems:
        raise SceneError(c.problems)
    name = source.stem if source is not None else "scene"
    return Scene(name, canvas, model, sampler, background, regions, source, D.SCENE_VERSION, quality, hires,
                 reroll=reroll, control=control)


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
        c.add(key, f"{_show(value)} is over the limit of {D.MAX_CANVAS_SIDE} pixels", hint="render smaller and upscale")
    elif value % m:
        c.add(key, f"{value} is not a multiple of {m}", hint=_nearest(value))
    else:
        return value
    return None


def _sampler(c: _Checker, d: dict, model: Model) -> Sampler:
    method = c.choice(d, "method", "sampler.method", D.METHODS, D.METHOD)
    family, acc = registry.family(model.family), model.accelerator
    spec = D.SCHEDULERS.get(acc.scheduler) if acc.scheduler is not None else None  # named, or given with a LoRA
    if method == "multidiffusion":
        tile = (D.MULTIDIFFUSION_TILE_SIZE, D.MULTIDIFFUSION_TILE_STRIDE)
        if spec is not None:  # "MD + LCM": the classic algorithm with the accelerator's steps
            steps, grid, guidance = spec.steps, spec.grid, spec.guidance
        else:  # as published: DDIM 50 steps, guidance 7.5
            steps, grid, guidance = D.MULTIDIFFUSION_STEPS, D.MULTIDIFFUSION_STEPS, D.MULTIDIFFUSION_GUIDANCE
    else:
        if spec is not None:
            steps, grid, guidance = spec.steps, spec.grid, spec.guidance
        else:  # `none` or a LoRA naming no scheduler: the checkpoint's own scheduler (e.g. a merged accelerator)
            steps, grid = family.own_scheduler_steps, family.own_scheduler_grid
            guidance = registry.default_guidance(family)
        tile = (family.tile_size, family.tile_stride)
    steps, grid = _steps(c, d, steps, grid)
    b = c.section(d.get("bootstrap"), "sampler.bootstrap", KEYS["sampler.bootstrap"])
    bootstrap = Bootstrap(
        c.integer(b, "steps", "sampler.bootstrap.steps", D.BOOTSTRAP_STEPS, lo=0),
        c.number(b, "mix", "sampler.bootstrap.mix", D.BOOTSTRAP_MIX, lo=0),
        c.number(b, "leak_sensitivity", "sampler.bootstrap.leak_sensitivity", D.BOOTSTRAP_LEAK_SENSITIVITY, above=0),
    )
    seed = c.integer(d, "seed", "sampler.seed", D.SEED, lo=0, hi=D.MAX_SEED)
    images = c.integer(d, "images", "sampler.images", D.IMAGES, lo=1, hi=D.MAX_IMAGES)
    if seed + images - 1 > D.MAX_SEED:  # image k uses seed + k
        c.add("sampler.seed", f"{images} images use seeds up to {seed + images - 1}, past the largest seed {D.MAX_SEED}",
              hint=f"start at {D.MAX_SEED - images + 1} or lower")
    return Sampler(
        method=method, steps=steps, grid=grid,
        guidance=c.number(d, "guidance", "sampler.guidance", guidance, lo=0),
        seed=seed,
        images=images,
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
            c.add("sampler.steps", f"must be between 1 and {D.MAX_GRID}, got {_show(value)}")
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
    path = path_field(c, image, base, "background.image") if image else None
    if path is not None:
        check_picture(c, "background.image", path, canvas, lambda: load_rgb(path, canvas))
    return Background(prompt, negative, path)


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
        if d.get("prompt") is None or (prompt is not None and not prompt.strip()):  # else: not text, reported
            c.add(f"{key}.prompt", "missing" if prompt is None else "is empty", hint="say what to paint here")
        mask = mask_source(c, d.get("mask"), f"{key}.mask", base)
        if mask is not None and mask.kind in ("image", "label_map"):
            check_picture(c, f"{key}.mask", mask.path, canvas, lambda mask=mask: rasterize_mask(mask, canvas))
        regions.append(Region(
            name=name, prompt=prompt or "", negative=c.text(d, "negative", f"{key}.negative", fields["negative"]),
            mask=mask or Mask("rect"), blur=c.number(d, "blur", f"{key}.blur", fields["blur"], lo=0, hi=D.MAX_BLUR),
            strength=c.number(d, "strength", f"{key}.strength", fields["strength"], lo=0, hi=1),
            prompt_strength=c.number(d, "prompt_strength", f"{key}.prompt_strength", fields["prompt_strength"],
                                     lo=0, hi=1),
            min_score=c.number(d, "min_score", f"{key}.min_score", None, lo=0, hi=D.MAX_CLIP_SCORE),
            reference=reference_field(c, d.get("reference"), f"{key}.reference", base),
            seed=c.integer(d, "seed", f"{key}.seed", None, lo=0, hi=D.MAX_SEED),
            guidance=c.number(d, "guidance", f"{key}.guidance", None, lo=0),
            loras=region_loras.parse(c, d.get("loras"), f"{key}.loras", base, fields["loras"]),
        ))
    return tuple(regions)


def _quality(c: _Checker, d: dict) -> Quality:
    """CLIP score thresholds (0 to 100) of the prompt-adherence gate; absent: no gate."""
    return Quality(
        c.number(d, "min_region_score", "quality.min_region_score", D.MIN_REGION_SCORE, lo=0, hi=D.MAX_CLIP_SCORE),
        c.number(d, "min_background_score", "quality.min_background_score", D.MIN_BACKGROUND_SCORE,
                 lo=0, hi=D.MAX_CLIP_SCORE),
    )
