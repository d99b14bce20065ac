"""The staged renderer: `prepare` -> `steps` -> `finish`, and `render`, the thin shell over the three.

`prepare(scene)` computes everything fixed for a render (masks, step table, prompt encodings, plan,
initial latents), each stage cached by what it reads (`stages`); `steps(prepared)` is a generator
that yields each step's canvas and fused x0, so progress, previews, timing and cancellation hook in
between steps without touching the math; `finish(prepared, ...)` decodes, blends over a background
picture and builds the report. Writing files is `outputs`' job. A `Renderer` keeps loaded models and
the stage cache, so several scenes (or edits of one scene) that share a model load it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semanticdraw_cli import content_key, flops, hires, lora_stage, masks as mask_math, outputs, reroll, speed, stages
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families.base import FamilyAdapter
from semanticdraw_cli.file_hashes import HashCache
from semanticdraw_cli.fusion import FusionSetup, StepStats, build_index, sample
from semanticdraw_cli.jobs import image_seeds
from semanticdraw_cli.plan import planned_steps
from semanticdraw_cli.region_sampling import INITIAL, guidance_scales, region_noise
from semanticdraw_cli.report import build_report
from semanticdraw_cli.scene.composition import wrap_axes
from semanticdraw_cli.scene.types import Scene
from semanticdraw_cli.schedule import StepTable, initial_latents
from semanticdraw_cli.tiles import tile_grid

StepCallback = Callable[[int, int], None]  # (steps done, steps total)
PhaseCallback = Callable[[str, int, "int | None"], None]  # (what runs now, done, total; None: unknown)
CallCallback = Callable[[int, int, int], None]  # (step, windows of the step done, windows of the step)


@dataclass
class RenderResult:
    scene: Scene
    seed: int
    image: np.ndarray  # (H, W, 3) uint8
    latent: torch.Tensor  # (C, h, w) the final clean latent
    report: dict[str, Any]
    png: Path | None = None
    json: Path | None = None


@dataclass(frozen=True)
class Prepared:
    """Everything fixed for one render of a scene's seeds; `steps` may run it any number of times."""

    scene: Scene
    seeds: tuple[int, ...]
    adapter: FamilyAdapter
    table: StepTable
    setup: FusionSetup
    canvas_masks: np.ndarray  # (R, H, W) blurred, z-ordered; the blend over a background picture reads them
    picture: np.ndarray | None  # (H, W, 3) uint8 background picture, or None
    x: torch.Tensor  # (N, C, h, w) initial canvas latents, on the device
    generator_states: tuple[torch.Tensor, ...]  # per image, after drawing the initial latent
    timings: dict[str, float]  # load, masks, encode, compile, flops seconds
    recomputed: dict[str, int]  # stage -> entries computed (not cached) by this prepare
    speed: dict[str, Any] = field(default_factory=dict)  # network levers, FLOPs per item, peak (speed.configure)
    warnings: tuple[str, ...] = ()  # e.g. regions too small for the latent grid, skipped (the report lists them)
    key_inputs: dict[str, Any] = field(default_factory=dict)  # what the images' content keys share (content_key)


@dataclass(frozen=True)
class StepState:
    """After step `stats.step`: the canvas latent `x` (the clean latent after the last step) and the fused x0."""

    stats: StepStats
    x: torch.Tensor  # (N, C, h, w)
    x0: torch.Tensor  # (N, C, h, w)
    seconds: float  # wall time of this step on the host (on CUDA: until its work was queued)
    events: tuple[Any, Any] | None = None  # CUDA events around the step's device work; `finish` reads them


@dataclass
class Renderer:
    device: str | None = None  # auto: cuda, mps, cpu
    dtype: str | None = None  # auto: the family's cuda_dtype on cuda, else float32
    peak_tflops: float | None = None  # the device's peak for the report; None: measured once per process
    cache: stages.StageCache = field(default_factory=stages.StageCache)
    hashes: HashCache = field(default_factory=HashCache)  # model files' sha256, for content keys
    _adapters: dict[Hashable, FamilyAdapter] = field(default_factory=dict)
    _measured: speed.Measured = field(default_factory=speed.Measured)

    def model_key(self, scene: Scene) -> Hashable:
        return scene.model, self.device, self.dtype

    def adapter(self, scene: Scene, on_phase: PhaseCallback | None = None) -> tuple[FamilyAdapter, float]:
        """The scene's model, loaded once per (family, checkpoint, accelerator); (adapter, seconds)."""
        from semanticdraw_cli.devices import pick_device, pick_dtype
        from semanticdraw_cli.families import presets
        from semanticdraw_cli.families.registry import family, load_adapter

        key = self.model_key(scene)
        if key in self._adapters:
            return self._adapters[key], 0.0
        start = time.perf_counter()
        device = pick_device(self.device)
        if on_phase:
            checkpoint = scene.model.checkpoint
            building = presets.is_preset(checkpoint) and not presets.is_built(scene.model.family, checkpoint)
            on_device = checkpoint in family(scene.model.family).device_presets
            phase = f"building the {checkpoint} preset" + (" on the device" if on_device else " (first use only)")
            on_phase(phase if building else "loading the model", 0, None)
        dtype = pick_dtype(self.dtype, device, family(scene.model.family).cuda_dtype)
        self._adapters[key] = load_adapter(scene.model, device, dtype)
        return self._adapters[key], time.perf_counter() - start

    def prepare(
        self, scene: Scene | str | Path, seeds: list[int] | None = None, on_phase: PhaseCallback | None = None
    ) -> Prepared:
        """Masks, model, step table, prompt encodings, plan and initial latents of one render."""
        scene = _as_scene(scene)
        self.cache.start()
        if on_phase:
            on_phase("preparing masks", 0, None)
        timings: dict[str, float] = {}
        key_inputs = content_key.scene_inputs(scene, self.hashes)  # what the pixels are made from, read first
        self.hashes.save()
        # 1. Masks at canvas size (no model needed)
        start = time.perf_counter()
        canvas_masks = stages.canvas_masks(scene, self.cache)  # (R, H, W)
        timings["masks"] = time.perf_counter() - start
        # 2. Model
        adapter, timings["load"] = self.adapter(scene, on_phase)
        device = adapter.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        # 3. Step table and per-step masks at latent size (the background prompt becomes region 0)
        start = time.perf_counter()
        table = adapter.step_table(scene.sampler, scene.canvas)
        latent_masks = mask_math.to_latent(canvas_masks, adapter.latent_factor)  # (R, h, w)
        quantized = mask_math.quantize(
            latent_masks, table.mask_levels, scene.sampler.mask_mode, scene.sampler.cover_alpha
        )  # (n, R, h, w)
        warnings = tuple(
            f"regions[{r}] ({scene.regions[r].name}): no latent pixel at any step (the region is smaller than "
            f"the {adapter.latent_factor}-pixel latent grid), so the sampler skips it and it paints nothing"
            for r in mask_math.unreached_regions(quantized)
        )
        if scene.background.prompt is not None:
            quantized = mask_math.with_background(quantized)
        if scene.reroll is not None:  # only the re-rolled regions are sampled; the rest comes from the image
            canvas_masks, quantized = reroll.only_rerolled(scene, canvas_masks, quantized)
        timings["masks"] += time.perf_counter() - start
        # 4. Prompts: each distinct text encoded once per model
        start = time.perf_counter()
        prompts, negatives, strengths = stages.region_texts(scene)
        rows = stages.encode_texts(adapter, prompts + negatives, self.cache, self.model_key(scene))
        cond = stages.region_embeddings(scene, rows, prompts, strengths)
        uncond = stages.region_embeddings(scene, rows, negatives, strengths)
        pictures = stages.reference_embeddings(scene, adapter, self.cache, self.model_key(scene))  # IP-Adapter keys
        if pictures is not None:
            cond, uncond = {**cond, **pictures[0]}, {**uncond, **pictures[1]}
        timings["encode"] = time.perf_counter() - start
        start = time.perf_counter()  # 4b. Region LoRAs: each loaded once per model; a variant per mask row
        variants, loras = lora_stage.region_variants(scene, adapter, self.cache, self.model_key(scene))
        if loras:  # without region LoRAs nothing loads: a cached model's load stays 0
            timings["load"] += time.perf_counter() - start
        # 5. Plan: (window, region) pairs per step and their tile weights
        height, width = latent_masks.shape[-2:]
        factor = adapter.latent_factor
        tile, stride = scene.sampler.tile.size // factor, scene.sampler.tile.stride // factor
        grid = tile_grid(height, width, tile, stride, wrap_axes(scene.canvas.wrap))
        mode = "reference" if scene.sampler.method == "multidiffusion" else scene.sampler.plan
        plan_key = (stages.array_digest(quantized), grid, mode, tile, str(device))
        steps_plan, weights = self.cache.get("plan", plan_key, lambda: planned_steps(quantized, grid, mode, tile, device))
        # 6. Latents: background picture, white fill, one seeded CPU generator per image
        start = time.perf_counter()
        picture = stages.background_pixels(reroll.painted_over(scene), self.cache)  # (H, W, 3) uint8 or None
        base = None
        if picture is not None:
            picture_key = (self.model_key(scene), stages.array_digest(picture))
            base = self.cache.get("picture", picture_key, lambda: adapter.encode_image(picture).float())
        white = adapter.white_latent().float()
        timings["encode"] += time.perf_counter() - start
        seeds = tuple(seeds if seeds is not None else image_seeds(scene))
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        noise = region_noise(scene, latent_masks, seeds)
        compose = (lambda eps: noise.compose(eps, INITIAL)) if noise is not None else None
        x = initial_latents((adapter.latent_channels, height, width), generators, table, base, compose).to(device)
        # No unconditional branch while every scale is <= 1, except that the reference plan always doubles the
        # batch as the authors' code does (at scale 1 that gives the same prediction, at twice the cost).
        # A model without classifier-free guidance (FLUX.1-dev's guidance embedding) never has one.
        cfg, scales = adapter.cfg_guidance, guidance_scales(scene)
        use_guidance = cfg and (max(scales) > 1.0 or scene.sampler.plan == "reference")
        setup = FusionSetup(
            table=table,
            masks=torch.from_numpy(quantized).to(device),
            plan=steps_plan,
            weights=weights,
            cond=cond,
            uncond=uncond if use_guidance else None,
            guidance=torch.tensor([max(g, 1.0) if cfg else g for g in scales], device=device),  # (R,)
            fill=base if base is not None else white,
            white=white,
            base=base,
            bootstrap_steps=scene.sampler.bootstrap.steps if scene.sampler.method == "semanticdraw" else 0,
            bootstrap_mix=scene.sampler.bootstrap.mix,
            leak_sensitivity=scene.sampler.bootstrap.leak_sensitivity,
            max_batch=1,  # a placeholder: step 7 sizes the batch
            pairs_total=len(grid) * quantized.shape[1],
            method=scene.sampler.method,
            pull_to_fill=None if base is not None else _pull_to_fill(mask_math.uncovered(quantized), device),
            region_noise=noise,
            controls=stages.control_setup(scene, adapter, self.cache, table.steps, self.model_key(scene)),
            variants=variants,
        )
        # 7. Network levers and batch size; compiling and FLOP counting happen here, before any step is timed
        setup, speed_timings, speed_info = speed.configure(
            adapter, setup, scene.sampler, len(seeds), self._measured, self.model_key(scene), self.peak_tflops
        )
        timings.update(speed_timings)
        setup = replace(setup, index=build_index(setup, len(seeds)), whole_groups=device.type == "cuda")
        speed_info = {**speed_info, "loras": loras}
        recomputed = {stage: len(keys) for stage, keys in self.cache.recomputed.items()}
        states = tuple(g.get_state() for g in generators)
        return Prepared(
            scene, seeds, adapter, table, setup, canvas_masks, picture, x, states, timings, recomputed, speed_info,
            warnings, key_inputs,
        )

    def steps(self, prepared: Prepared, on_call: CallCallback | None = None) -> Iterator[StepState]:
        """Sample: yield the state after each step. Stop iterating to abandon the render between steps.

        `on_call` hears of each network call, so that a step of many windows shows progress inside it.
        """
        generators = [torch.Generator("cpu").set_state(state) for state in prepared.generator_states]
        cuda = prepared.x.is_cuda
        last, mark = time.perf_counter(), _event(cuda)
        denoiser = prepared.adapter if on_call is None else _CallCounter(prepared, on_call)
        try:
            for stats, x, x0 in sample(denoiser, prepared.setup, prepared.x, generators):
                now, end = time.perf_counter(), _event(cuda)
                yield StepState(stats, x, x0, now - last, (mark, end) if cuda else None)
                last, mark = now, end
        except torch.cuda.OutOfMemoryError as error:
            raise RenderError(
                "out of GPU memory while sampling (network calls were retried down to one item); lower the tile size "
                "(--set sampler.tile.size=...) or use --dtype float16"
            ) from error

    def finish(
        self, prepared: Prepared, final: StepState, step_states: list[StepState], on_phase: PhaseCallback | None = None
    ) -> list[RenderResult]:
        """Decode the clean latent, keep untouched pixels of a painted-over picture, build each image's report."""
        x, scene = final.x, prepared.scene
        if x.is_cuda:
            torch.cuda.synchronize(x.device)  # the steps were queued without waiting; their events are done now
        if not torch.isfinite(x).all():
            raise RenderError("the sampler produced NaN/inf latents; try --dtype float32")
        timings = dict(prepared.timings)
        start = time.perf_counter()
        on_tile = (lambda done, total: on_phase("decoding", done, total)) if on_phase else None
        images = prepared.adapter.decode(x, on_tile=on_tile, wrap=wrap_axes(scene.canvas.wrap))  # (N, H, W, 3)
        if prepared.picture is not None:
            images = mask_math.blend_over_background(images, prepared.picture, prepared.canvas_masks)
        timings["decode"] = time.perf_counter() - start
        step_reports = [{**vars(state.stats), "seconds": _step_seconds(state)} for state in step_states]
        timings["denoise"] = sum(step["seconds"] for step in step_reports)
        info = prepared.speed
        plans = [prepared.setup.plan[state.stats.step] for state in step_states]
        measured = flops.summary(plans, len(prepared.seeds), info["item_flops"], timings["denoise"], *info["peak"])
        loras = {"loras": info["loras"]} if info.get("loras") else {}  # each region's LoRAs, with file hashes
        report = build_report(scene, timings, step_reports, prepared.adapter, list(prepared.seeds),
                              {"network": info["network"], "flops": measured, **loras})
        if prepared.warnings:
            report["warnings"] = list(prepared.warnings)
        target = (prepared.adapter.device.type, report["dtype"])
        return [
            RenderResult(scene, seed, images[k], x[k].cpu(), {**report, "seed": seed, "image_index": seed - scene.sampler.seed,
                                                              **content_key.stamp(prepared.key_inputs, seed, *target)})
            for k, seed in enumerate(prepared.seeds)
        ]

    def render(
        self,
        scene: Scene | str | Path,
        out_dir: Path | None = None,
        on_step: StepCallback | None = None,
        seeds: list[int] | None = None,
        *,
        overwrite: bool = False,
        on_phase: PhaseCallback | None = None,
        on_call: CallCallback | None = None,
    ) -> list[RenderResult]:
        """Render a Scene or scene file's images (or the given seeds) in shared batches; write files to
        `out_dir`, refusing existing ones (OutputError) before any model loads unless `overwrite`."""
        scene = _as_scene(scene)
        seeds = seeds if seeds is not None else image_seeds(scene)
        if out_dir is not None:
            out_dir = Path(out_dir)
            outputs.plan_render([(str(scene.source or scene.name), scene, seeds)], out_dir, overwrite)
        if scene.hires is not None:  # two passes (hires.py), written as one
            results = hires.render_passes(self, scene, seeds, on_step, on_phase, on_call)
            if out_dir is not None:
                outputs.write_results(results, out_dir)
            return results
        prepared = self.prepare(scene, seeds, on_phase)
        if on_step:
            on_step(0, prepared.table.steps)  # the model is ready: sampling starts
        states = []
        for state in self.steps(prepared, on_call):
            states.append(state)
            if on_step:
                on_step(state.stats.step + 1, prepared.table.steps)
        results = self.finish(prepared, states[-1], states, on_phase)
        if out_dir is not None:
            if on_phase:
                on_phase("writing", 0, None)
            outputs.write_results(results, out_dir)
        return results


def _pull_to_fill(uncovered: np.ndarray, device: torch.device) -> tuple[torch.Tensor | bool, ...]:
    """Per step: False where every pixel is covered (the sampler only normalises), else the (1, h, w) pixels
    that no mask covers, on the device."""
    return tuple(torch.from_numpy(step[None]).to(device) if step.any() else False for step in uncovered)


class _CallCounter:
    """The model as the sampler sees it (`Denoiser`), counting the windows of each call for `on_call`. On CUDA
    a call returns once queued, so the count runs at most a queue's length ahead of the device."""

    def __init__(self, prepared: Prepared, on_call: CallCallback):
        self.predict, self.on_call = prepared.adapter.predict_x0, on_call
        self.windows = [len(pairs) * len(prepared.seeds) for pairs in prepared.setup.plan]  # per step
        self.step, self.done = -1, 0

    def predict_x0(self, x, table, step, items):
        x0 = self.predict(x, table, step, items)
        self.done = (self.done if step == self.step else 0) + len(items.windows)  # padding copies count: hence min()
        self.step = step
        self.on_call(step, min(self.done, self.windows[step]), self.windows[step])
        return x0


def render(
    scene: Scene | str | Path,
    out_dir: Path | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    device: str | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
    allow_outside: bool = False,
) -> list[RenderResult]:
    """Render a scene file or Scene object: the one-call Python API (`Renderer` keeps models between calls).

    Existing outputs in `out_dir` are refused (OutputError, before any model loads) unless `overwrite`;
    `allow_outside`: the scene file may name pictures outside its folder (as `--allow-outside`).
    """
    scene = _as_scene(scene, overrides, allow_outside)
    return Renderer(device=device, dtype=dtype).render(scene, out_dir, overwrite=overwrite)


def _as_scene(
    scene: Scene | str | Path, overrides: list[str] | tuple[str, ...] = (), allow_outside: bool = False
) -> Scene:
    if isinstance(scene, Scene):
        return scene
    from semanticdraw_cli.scene.loader import load_scene

    return load_scene(Path(scene), overrides, allow_outside=allow_outside)


def _event(cuda: bool) -> Any:
    """A recorded CUDA timing event (None off CUDA): steps are timed on the device, without waiting for it."""
    if not cuda:
        return None
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _step_seconds(state: StepState) -> float:
    """Device time between the step's events on CUDA (call after a synchronize), else host wall time."""
    if state.events is None:
        return state.seconds
    return state.events[0].elapsed_time(state.events[1]) / 1000.0


def region_masks(scene: Scene) -> np.ndarray:
    """Rasterized, z-ordered, blurred, strength-scaled masks, (R, H, W) in [0, 1]."""
    return stages.canvas_masks(scene, stages.StageCache())
