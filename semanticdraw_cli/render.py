"""The orchestrator: scene -> masks -> model -> plan -> fusion sampler -> decode -> files (DESIGN.md §1).

`Renderer.render(scene)` is the Python API the CLI uses. It keeps loaded models, so several scenes
that share a model load it once.
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semanticdraw_cli import __version__, masks as mask_math, outputs
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.fusion import FusionSetup, initial_latents, planned_steps, sample
from semanticdraw_cli.scene import Scene
from semanticdraw_cli.tiles import tile_grid

StepCallback = Callable[[int, int], None]  # (steps done, steps total)
PhaseCallback = Callable[[str, int, "int | None"], None]  # (what runs now, done, total; None: unknown)


@dataclass
class RenderResult:
    scene: Scene
    seed: int
    image: np.ndarray  # (H, W, 3) uint8
    latent: torch.Tensor  # (C, h, w) the final clean latent
    report: dict[str, Any]
    png: Path | None = None
    json: Path | None = None


@dataclass
class Renderer:
    device: str | None = None  # auto: cuda, mps, cpu
    dtype: str | None = None  # auto: float16 on cuda, else float32
    _models: dict[tuple, Any] = field(default_factory=dict)

    def denoiser(self, scene: Scene, on_phase: PhaseCallback | None = None) -> tuple[Any, float]:
        """The scene's model, loaded once per (family, checkpoint, accelerator); (denoiser, seconds)."""
        from semanticdraw_cli.families import load_denoiser, presets
        from semanticdraw_cli.families.common import pick_device, pick_dtype

        key = (scene.model, self.device, self.dtype)
        if key in self._models:
            return self._models[key], 0.0
        start = time.perf_counter()
        device = pick_device(self.device)
        if on_phase:
            checkpoint = scene.model.checkpoint
            building = presets.is_preset(checkpoint) and not presets.is_built(scene.model.family, checkpoint)
            on_phase(f"building the {checkpoint} preset (first use only)" if building else "loading the model", 0, None)
        self._models[key] = load_denoiser(scene.model, device, pick_dtype(self.dtype, device))
        return self._models[key], time.perf_counter() - start

    def render(
        self,
        scene: Scene | str | Path,
        out_dir: Path | None = None,
        on_step: StepCallback | None = None,
        seeds: list[int] | None = None,
        *,
        overwrite: bool = False,
        on_phase: PhaseCallback | None = None,
    ) -> list[RenderResult]:
        """Render a Scene or scene file's images (or the given seeds) in shared UNet batches; write files to
        `out_dir`, refusing existing ones (OutputError) before any model loads unless `overwrite`."""
        if not isinstance(scene, Scene):
            from semanticdraw_cli.scene_loader import load_scene

            scene = load_scene(Path(scene))
        seeds = seeds if seeds is not None else image_seeds(scene)
        if out_dir is not None:
            out_dir = Path(out_dir)
            outputs.plan_render([(str(scene.source or scene.name), scene, seeds)], out_dir, overwrite)
        if on_phase:
            on_phase("preparing masks", 0, None)
        timings: dict[str, Any] = {}
        # 1. Masks at canvas size, then at latent size (no model needed)
        start = time.perf_counter()
        canvas_masks = region_masks(scene)  # (R, H, W)
        latent_masks = mask_math.to_latent(canvas_masks)  # (R, h, w)
        timings["masks"] = time.perf_counter() - start
        # 2. Model
        denoiser, timings["load"] = self.denoiser(scene, on_phase)
        device = denoiser.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        # 3. Step table and per-step masks (background prompt becomes region 0)
        table = denoiser.step_table(scene.sampler)
        if on_step:
            on_step(0, table.steps)  # the model is ready: sampling starts
        start = time.perf_counter()
        quantized = mask_math.quantize(latent_masks, table.mask_levels, scene.sampler.mask_mode)  # (n, R, h, w)
        has_prompt_background = scene.background.prompt is not None
        if has_prompt_background:
            quantized = mask_math.with_background(quantized)
        timings["masks"] += time.perf_counter() - start
        # 4. Prompts: each distinct text encoded once
        start = time.perf_counter()
        cond, uncond = encode_prompts(denoiser, scene)
        timings["encode"] = time.perf_counter() - start
        # 5. Plan: (window, region) pairs per step and their tile weights
        height, width = latent_masks.shape[-2:]
        tile, stride = scene.sampler.tile.size // 8, scene.sampler.tile.stride // 8
        grid = tile_grid(height, width, tile, stride)
        mode = "reference" if scene.sampler.method == "multidiffusion" else scene.sampler.plan
        steps_plan, weights = planned_steps(quantized, grid, mode, tile, device)
        regions = quantized.shape[1]
        # 6. Latents: background image, white fill, one seeded CPU generator per image
        start = time.perf_counter()
        picture = background_pixels(scene)  # (H, W, 3) uint8 or None
        base = None if picture is None else denoiser.encode_image(picture).float()
        white = denoiser.white_latent().float()
        timings["encode"] += time.perf_counter() - start
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        # No unconditional branch at guidance <= 1, except that the reference plan always doubles the
        # batch as the authors' code does (at scale 1 that gives the same prediction, at twice the cost).
        use_guidance = scene.sampler.guidance > 1.0 or scene.sampler.plan == "reference"
        setup = FusionSetup(
            table=table,
            masks=torch.from_numpy(quantized).to(device),
            plan=steps_plan,
            weights=weights,
            cond=cond,
            uncond=uncond if use_guidance else None,
            guidance=max(scene.sampler.guidance, 1.0),
            fill=base if base is not None else white,
            white=white,
            base=base,
            bootstrap_steps=scene.sampler.bootstrap.steps if scene.sampler.method == "semanticdraw" else 0,
            bootstrap_mix=scene.sampler.bootstrap.mix,
            leak_sensitivity=scene.sampler.bootstrap.leak_sensitivity,
            max_batch=scene.sampler.max_batch,
            pairs_total=len(grid) * regions,
            method=scene.sampler.method,
            fill_uncovered_only=has_prompt_background and base is None,
        )
        x = initial_latents((denoiser.latent_channels, height, width), generators, table, base).to(device)
        # 7. Sample
        step_reports = []
        last = time.perf_counter()
        try:
            steps = sample(denoiser, setup, x, generators)
            for stats, x in steps:  # x: the canvas after each step, the clean latent after the last
                now = time.perf_counter()
                step_reports.append({**vars(stats), "seconds": now - last})
                last = now
                if on_step:
                    on_step(stats.step + 1, table.steps)
        except torch.cuda.OutOfMemoryError as error:
            raise RenderError(
                "out of GPU memory while sampling; lower the batch (--set sampler.max_batch=2), "
                "the tile size, or use --dtype float16"
            ) from error
        if not torch.isfinite(x).all():
            raise RenderError("the sampler produced NaN/inf latents; try --dtype float32")
        # 8. Decode, and keep untouched pixels of a painted-over picture exactly
        start = time.perf_counter()
        on_tile = (lambda done, total: on_phase("decoding", done, total)) if on_phase else None
        images = denoiser.decode(x, on_tile=on_tile)  # (N, H, W, 3)
        if picture is not None:
            images = blend_over_background(images, picture, canvas_masks)
        timings["decode"] = time.perf_counter() - start
        timings["denoise"] = sum(step["seconds"] for step in step_reports)
        report = build_report(scene, timings, step_reports, denoiser, seeds)
        results = [
            RenderResult(scene, seed, images[k], x[k].cpu(), {**report, "seed": seed, "image_index": seed - scene.sampler.seed})
            for k, seed in enumerate(seeds)
        ]
        if out_dir is not None:
            if on_phase:
                on_phase("writing", 0, None)
            write_results(results, out_dir)
        return results


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
    if not isinstance(scene, Scene):
        from semanticdraw_cli.scene_loader import load_scene

        scene = load_scene(Path(scene), overrides, allow_outside=allow_outside)
    return Renderer(device=device, dtype=dtype).render(scene, out_dir, overwrite=overwrite)


def image_seeds(scene: Scene) -> list[int]:
    """Image k of a scene uses seed + k, and is written as NAME-(seed + k)."""
    return [scene.sampler.seed + k for k in range(scene.sampler.images)]


def region_masks(scene: Scene) -> np.ndarray:
    """Rasterized, z-ordered, blurred, strength-scaled masks, (R, H, W) in [0, 1]."""
    from semanticdraw_cli.rasterize import rasterize_mask

    raw = np.stack([rasterize_mask(region.mask, scene.canvas) for region in scene.regions])
    return mask_math.prepare_masks(
        raw,
        [region.blur for region in scene.regions],
        [region.strength for region in scene.regions],
        scene.sampler.cover_alpha,
    )


def encode_prompts(denoiser, scene: Scene):
    """Per-region (cond, uncond) embeddings; each distinct text is encoded once.

    With a background prompt, region 0 is the background and every region's embedding is lerped from
    the background's by its prompt_strength.
    """
    prompts = [region.prompt for region in scene.regions]
    negatives = [region.negative for region in scene.regions]
    strengths = [region.prompt_strength for region in scene.regions]
    if scene.background.prompt is not None:
        prompts = [scene.background.prompt, *prompts]
        negatives = [scene.background.negative, *negatives]
        strengths = [1.0, *strengths]
    texts = sorted(set(prompts) | set(negatives))
    encoded = denoiser.encode_text(texts)
    index = {text: i for i, text in enumerate(texts)}

    def per_region(region_texts: list[str]) -> dict[str, torch.Tensor]:
        rows = [index[text] for text in region_texts]
        table = {key: value[rows].float() for key, value in encoded.items()}
        if scene.background.prompt is None:
            return table
        lerped = {}
        for key, value in table.items():
            weight = torch.tensor(strengths, device=value.device).view(-1, *[1] * (value.dim() - 1))
            lerped[key] = torch.lerp(value[:1], value, weight)  # row 0 is the background prompt
        return lerped

    return per_region(prompts), per_region(negatives)


def background_pixels(scene: Scene) -> np.ndarray | None:
    """The picture to paint over at canvas size, (H, W, 3) uint8; None when there is none."""
    from semanticdraw_cli.rasterize import load_rgb

    if scene.background.image_array is not None:
        return scene.background.image_array
    if scene.background.image is not None:
        return load_rgb(scene.background.image, scene.canvas)
    return None


def blend_over_background(images: np.ndarray, original: np.ndarray, canvas_masks: np.ndarray) -> np.ndarray:
    """Where no region lies the original pixels come back exactly; soft edges follow the blurred masks."""
    alpha = np.clip(canvas_masks.sum(axis=0), 0.0, 1.0)[None, ..., None]  # (1, H, W, 1)
    mixed = alpha * images.astype(np.float32) + (1.0 - alpha) * original[None].astype(np.float32)
    return np.where(alpha > 0, np.clip(np.rint(mixed), 0, 255), original[None]).astype(np.uint8)


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def build_report(scene: Scene, timings: dict, steps: list[dict], denoiser, seeds: list[int]) -> dict[str, Any]:
    import diffusers
    import transformers

    return {
        "scene": str(scene.source) if scene.source else scene.name,
        "canvas": [scene.canvas.width, scene.canvas.height],
        "method": scene.sampler.method,
        "plan": scene.sampler.plan,
        "images_in_batch": len(seeds),
        "seconds": {
            "load": timings["load"],
            "encode": timings["encode"],
            "masks": timings["masks"],
            "denoise": timings["denoise"],
            "steps": [step["seconds"] for step in steps],
            "decode": timings["decode"],
        },
        "unet_calls": sum(step["unet_calls"] for step in steps),
        "batch_items": sum(step["batch_items"] for step in steps),
        "latent_pixels": sum(step["latent_pixels"] for step in steps),
        "pairs_active": sum(step["pairs_active"] for step in steps),
        "pairs_total": sum(step["pairs_total"] for step in steps),
        "steps": steps,
        "device": str(denoiser.device),
        "dtype": str(denoiser.dtype).removeprefix("torch."),
        "peak_memory_bytes": peak_memory_bytes(denoiser.device),
        "versions": {
            "semanticdraw": __version__,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }


def write_results(results: list[RenderResult], out_dir: Path) -> None:
    """PNG (scene embedded) and JSON report per image; the save time lands in each report."""
    import yaml

    from semanticdraw_cli.scene_loader import scene_to_dict

    for result in results:
        start = time.perf_counter()
        png, report_path = outputs.output_paths(out_dir, result.scene.name, result.seed)
        scene_yaml = yaml.safe_dump(scene_to_dict(result.scene), sort_keys=False)
        params = {"seed": result.seed, "image_index": result.report["image_index"], "versions": result.report["versions"]}
        outputs.write_png(png, result.image, scene_yaml, params)
        result.report["seconds"]["save"] = time.perf_counter() - start
        result.report["seconds"]["total"] = sum(
            value for key, value in result.report["seconds"].items() if key not in ("steps", "total")
        )
        outputs.write_json(report_path, result.report)
        result.png, result.json = png, report_path
