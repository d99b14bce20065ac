"""The hires pass (`hires:` in a scene): compose small, refine large, with every region's prompt kept.

Pass 1 renders the scene at canvas/scale (its masks resized from the full-size ones, blur scaled with
them). Pass 2 upscales each image and paints over it at full size: the upscaled picture is the
`background.image` of a render with every region at its full-size mask, whose schedule starts
`strength` of the way from its end (the last ceil(strength × n) of its n steps) and which bootstraps
nothing (pass 1 decided the layout). Pixels no region touches keep the upscaled pass 1 exactly;
strength 0 runs no pass 2 and gives the upscaled pass 1 itself. With a background picture of its own,
the scene keeps that picture exactly where no region lies. One image and one report per seed, with both
passes' seconds and network calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from semanticdraw_cli import stages
from semanticdraw_cli.families import registry
from semanticdraw_cli.scene.composition import pass_one_canvas
from semanticdraw_cli.scene.rasterize import rasterize_mask
from semanticdraw_cli.scene.types import Canvas, Mask, Scene

if TYPE_CHECKING:
    from semanticdraw_cli.render import CallCallback, PhaseCallback, Renderer, RenderResult, StepCallback

PassRunner = Callable[[Scene, list[int]], "list[RenderResult] | None"]  # renders one pass; None: abandoned
FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
           "nearest": Image.Resampling.NEAREST}
SUMMED = ("network_calls", "batch_items", "latent_pixels", "pairs_active", "pairs_total", "oom_halvings",
          "padded_items")  # report counts of the two passes that add up
SECONDS = ("load", "encode", "masks", "denoise", "decode", "compile", "flops")


def resize(rgb: np.ndarray, canvas: Canvas, upscaler: str) -> np.ndarray:
    """(H, W, 3) uint8 at the canvas's size with the upscaler's filter (Pillow's)."""
    return np.array(Image.fromarray(rgb).resize((canvas.width, canvas.height), FILTERS[upscaler]))


def pass_two_steps(steps: tuple[int, ...], strength: float) -> tuple[int, ...]:
    """The steps pass 2 runs: the last ceil(strength × n) of its n steps (none at strength 0)."""
    count = math.ceil(strength * len(steps) - 1e-9)
    return steps[len(steps) - count:] if count else ()


def pass_one_scene(scene: Scene, cache: stages.StageCache) -> Scene:
    """The scene at the first pass's size: each region's full-size raster resized (area average), its blur
    scaled, a background picture resized; no hires of its own."""
    hires = scene.hires
    small = pass_one_canvas(scene.canvas, hires.scale, registry.family(scene.model.family).pixel_multiple)
    ratio = small.width / scene.canvas.width

    def smaller(mask: Mask) -> Mask:
        full = cache.get("mask", (stages.mask_key(mask), scene.canvas), lambda: rasterize_mask(mask, scene.canvas))
        resized = Image.fromarray(full.astype(np.float32)).resize((small.width, small.height), Image.BOX)
        return Mask("array", array=np.clip(np.asarray(resized, np.float32), 0.0, 1.0))

    regions = tuple(replace(r, mask=smaller(r.mask), blur=r.blur * ratio) for r in scene.regions)
    picture = stages.background_pixels(scene, cache)
    background = scene.background if picture is None else replace(
        scene.background, image=None, image_array=resize(picture, small, hires.upscaler))
    return replace(scene, canvas=small, regions=regions, background=background, hires=None)


def pass_two_scene(scene: Scene, picture: np.ndarray) -> Scene:
    """The full-size paint-over of one upscaled pass-1 picture: pass 2's tail of steps, no bootstrapping."""
    hires, sampler = scene.hires, scene.sampler
    steps = pass_two_steps(hires.steps, hires.strength)
    sampler = replace(sampler, steps=steps, grid=hires.grid, images=1, bootstrap=replace(sampler.bootstrap, steps=0))
    background = replace(scene.background, image=None, image_array=picture)
    return replace(scene, sampler=sampler, background=background, hires=None)


def render_passes(
    renderer: Renderer, scene: Scene, seeds: list[int], on_step: StepCallback | None = None,
    on_phase: PhaseCallback | None = None, on_call: CallCallback | None = None,
) -> list[RenderResult]:
    """Both passes of a hires scene for these seeds: pass 1 in one batch, pass 2 per image."""
    first_scene = pass_one_scene(scene, renderer.cache)
    second_steps = len(pass_two_steps(scene.hires.steps, scene.hires.strength))
    total = len(first_scene.sampler.steps) + second_steps * len(seeds)
    done = 0

    def stepped(*_) -> None:
        nonlocal done
        done += 1
        if on_step:
            on_step(done, total)

    if on_step:
        on_step(0, total)

    def run(pass_scene: Scene, pass_seeds: list[int]) -> list[RenderResult]:
        return _one_pass(renderer, pass_scene, pass_seeds, stepped, on_phase, on_call)

    return [second_pass(renderer, scene, result, run) for result in run(first_scene, seeds)]


def second_pass(renderer: Renderer, scene: Scene, first: RenderResult, run: PassRunner) -> RenderResult | None:
    """Upscale one pass-1 image and paint over it; `run(scene, seeds)` renders a pass (None: abandoned).
    The result is the hires scene's image, with the report of both passes."""
    start = time.perf_counter()
    picture = kept_background(scene, resize(first.image, scene.canvas, scene.hires.upscaler), renderer.cache)
    upscale = time.perf_counter() - start
    if pass_two_steps(scene.hires.steps, scene.hires.strength):
        second = run(pass_two_scene(scene, picture), [first.seed])
        if second is None:
            return None
        second = second[0]
    else:
        second = _unchanged(renderer, scene, first, picture)
    second.report = combined_report(scene, first.report, second.report, upscale)
    return replace(second, scene=scene)


def kept_background(scene: Scene, upscaled: np.ndarray, cache: stages.StageCache) -> np.ndarray:
    """The upscaled pass 1, with a scene's own background picture where no region lies: pixels no region
    touches come back exactly from the picture, not from its down- and upscaled copy."""
    original = stages.background_pixels(scene, cache)
    if original is None:
        return upscaled
    uncovered = stages.canvas_masks(scene, cache).sum(axis=0) <= 0  # (H, W)
    return np.where(uncovered[..., None], original, upscaled)


def _one_pass(renderer: Renderer, scene: Scene, seeds: list[int], on_step, on_phase, on_call) -> list[RenderResult]:
    prepared = renderer.prepare(scene, seeds, on_phase)
    states = []
    for state in renderer.steps(prepared, on_call):
        states.append(state)
        on_step()
    return renderer.finish(prepared, states[-1], states, on_phase)


def _unchanged(renderer: Renderer, scene: Scene, first: RenderResult, picture: np.ndarray) -> RenderResult:
    """Strength 0: the upscaled first pass is the image; its latent is the picture's, for the result."""
    adapter, _ = renderer.adapter(scene)
    start = time.perf_counter()
    latent = adapter.encode_image(picture).float()[0].cpu()
    seconds = {**dict.fromkeys(SECONDS, 0.0), "encode": time.perf_counter() - start, "steps": []}
    report = {**first.report, "canvas": [scene.canvas.width, scene.canvas.height], "steps": [], "seconds": seconds,
              **dict.fromkeys(SUMMED, 0)}
    return replace(first, image=picture, latent=latent, report=report)


def combined_report(scene: Scene, first: dict[str, Any], second: dict[str, Any], upscale: float) -> dict[str, Any]:
    """Pass 2's report with both passes' seconds and counts added up; `hires` keeps each pass's own."""
    report = {**second, **{key: first.get(key, 0) + second.get(key, 0) for key in SUMMED}}
    seconds = {key: first["seconds"].get(key, 0.0) + second["seconds"].get(key, 0.0) for key in SECONDS}
    report["seconds"] = {**second["seconds"], **seconds, "upscale": upscale,
                         "steps": first["seconds"]["steps"] + second["seconds"]["steps"]}
    report["canvas"] = [scene.canvas.width, scene.canvas.height]
    report["hires"] = {
        "scale": scene.hires.scale, "strength": scene.hires.strength, "upscaler": scene.hires.upscaler,
        "passes": [_pass_summary(first), _pass_summary(second)],
    }
    if first.get("warnings"):
        report["warnings"] = [*first["warnings"], *second.get("warnings", [])]
    return report


def _pass_summary(report: dict[str, Any]) -> dict[str, Any]:
    return {"canvas": report["canvas"], "steps": len(report["steps"]), "seconds": report["seconds"],
            **{key: report.get(key, 0) for key in SUMMED}}
