"""Checks every model family passes: its step table places regions, its example scenes render; item x0 records;
each item's control crop."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from semanticdraw_cli import masks as mask_math
from semanticdraw_cli.defaults import COVER_ALPHA
from semanticdraw_cli.fusion import FusionSetup, sample
from semanticdraw_cli.plan import planned_steps
from semanticdraw_cli.schedule import StepTable, initial_latents
from semanticdraw_cli.tiles import tile_grid

SCENES = Path(__file__).resolve().parents[1] / "scenes"


def scene_files(family: str) -> list[Path]:
    return sorted(SCENES.glob(f"*-{family}.yaml"))


class ConstantDenoiser:
    """x0 = c_r, a constant latent per prompt id r, whatever the input: where it lands shows the fusion."""

    def __init__(self, values: torch.Tensor):
        self.values = values  # (R, C)

    def predict_x0(self, x, table, step, items):
        assert all((w.height, w.width) == tuple(x.shape[-2:]) for w in items.windows)
        return self.values[items.cond["id"][:, 0].long()][:, :, None, None].expand(x.shape).clone()


def layout(height: int, width: int) -> np.ndarray:
    """Three overlapping rectangles and an ellipse over a bit of one, at canvas size, (R, H, W) in {0, 1}."""
    ys, xs = np.mgrid[0:height, 0:width]
    boxes = [(0.05, 0.05, 0.4, 0.5), (0.35, 0.1, 0.4, 0.45), (0.1, 0.6, 0.5, 0.35)]
    masks = [((xs >= x * width) & (xs < (x + w) * width) & (ys >= y * height) & (ys < (y + h) * height))
             for x, y, w, h in boxes]
    masks.append(((xs - 0.75 * width) / (0.15 * width)) ** 2 + ((ys - 0.7 * height) / (0.2 * height)) ** 2 <= 1)
    return np.stack(masks).astype(np.float32)


def check_oracle_placement(table: StepTable, channels: int = 4, height: int = 512, width: int = 768) -> None:
    """With the family's step table, the generic sampler (bootstrap on, several windows) leaves each pixel at
    the mask-weighted mean of the active regions' constants (so a region's own constant where it is the only
    one), and the masks grow as the noise falls."""
    canvas = mask_math.prepare_masks(layout(height, width), [1.0] * 4, [1.0] * 4, COVER_ALPHA)
    latent = mask_math.to_latent(canvas)  # (R, h, w)
    quantized = mask_math.with_background(mask_math.quantize(latent, table.mask_levels, "discrete", COVER_ALPHA))
    n, regions, h, w = quantized.shape
    assert n == table.steps
    coverage = (quantized[:, 1:] > 0).sum(axis=(1, 2, 3))
    assert (np.diff(coverage) >= 0).all(), "masks must grow as denoising proceeds"
    grid = tile_grid(h, w, 64, 32)
    assert len(grid) > 1
    plans, weights = planned_steps(quantized, grid, "default", 64, torch.device("cpu"))
    r = torch.arange(regions, dtype=torch.float32)[:, None]
    values = torch.cat([3.0 + r, -2.0 - 0.5 * r, 5.0 - r, 1.0 + 2.0 * r] + [r] * (channels - 4), dim=1)  # (R, C)
    white = torch.full((1, channels, 1, 1), -7.0)
    setup = FusionSetup(
        table=table,
        masks=torch.from_numpy(quantized),
        plan=plans,
        weights=weights,
        cond={"id": r},
        uncond=None,
        guidance=torch.ones(regions),
        fill=white,
        white=white,
        base=None,
        bootstrap_steps=1,
        bootstrap_mix=1.0,
        leak_sensitivity=0.2,
        max_batch=8,
        pairs_total=len(grid) * regions,
    )
    generators = [torch.Generator("cpu").manual_seed(0)]
    x = initial_latents((channels, h, w), generators, table, None)
    steps = sample(ConstantDenoiser(values), setup, x, generators)
    for _, x, _ in steps:
        assert torch.isfinite(x).all()
    final = x[0].numpy()  # (C, h, w): the clean latent after the last step
    last = torch.from_numpy(quantized[-1]).double()  # (R, h, w)
    expected = torch.einsum("rhw,rc->chw", last, values.double()) / last.sum(dim=0).clamp_min(1e-12)
    np.testing.assert_allclose(final, expected.numpy(), atol=1e-4, rtol=0)  # the mask-weighted mean everywhere
    single = (last > 0).sum(dim=0) == 1
    owner = last.argmax(dim=0)
    for k in range(1, regions):  # every region is present on its own somewhere, holding its constant
        assert ((owner == k) & single).any(), f"region {k} vanished"
    assert single.double().mean() > 0.5


def render_scene_file(path: Path, out_dir: Path) -> np.ndarray:
    """Render a scene with the tiny preset through the CLI; the written picture (H, W, 3)."""
    from PIL import Image
    from typer.testing import CliRunner

    from semanticdraw_cli.cli.app import app

    args = ["render", str(path), "--model", "tiny", "-o", str(out_dir), "--device", "cpu", "--dtype", "float32",
            "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    pngs = sorted(out_dir.glob("*.png"))
    assert len(pngs) == 1, [p.name for p in out_dir.iterdir()]
    return np.asarray(Image.open(pngs[0]).convert("RGB"))


def hub_cached(repo: str, filename: str) -> bool:
    """Whether a hub file is in the local cache (real-checkpoint tests never download)."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, filename), str)


def real_checkpoint_skip(checkpoint: str, lora: str, weight_name: str | None):
    """Skip marker unless a GPU and the cached real checkpoint and accelerator LoRA are there."""
    import pytest

    missing = [f"{repo}/{name}" for repo, name in [(checkpoint, "model_index.json"), (lora, weight_name)]
               if name and not hub_cached(repo, name)]
    reason = "needs a GPU" if not torch.cuda.is_available() else f"not in the hub cache: {', '.join(missing)}"
    return pytest.mark.skipif(not torch.cuda.is_available() or bool(missing), reason=reason)


def assert_close_in_float16(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """float16 runs differ in rounding only: same picture, cosine similarity of the latents above 0.999."""
    assert torch.isfinite(ours).all() and torch.isfinite(theirs).all()
    cosine = torch.nn.functional.cosine_similarity(ours.flatten().double(), theirs.flatten().double(), dim=0)
    assert cosine > 0.999, float(cosine)


def ddim_pipeline_latent(folder: Path, prompt: str, width: int, height: int, steps: int, guidance: float,
                         seed: int, lora: Path | None = None, lora_weight: float = 1.0) -> torch.Tensor:
    """The clean latent diffusers' StableDiffusionPipeline samples from a checkpoint folder with DDIM over
    `steps` steps (empty negative), as the oracle for families that load through that pipeline (sd15, sd2);
    with `lora` loaded at `lora_weight`."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora), adapter_name="lora")
        pipe.set_adapters(["lora"], [lora_weight])
    return pipe(
        prompt, height=height, width=width, num_inference_steps=steps, guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(seed), output_type="latent",
    ).images[0]


class ItemRecorder:
    """The adapter's x0 of every item, one item per call, keyed by (step, window, region row); and every call's
    arguments and x0, to run an item again with other inputs."""

    def __init__(self, adapter, setup):
        self.adapter, self.rows, self.x0, self.calls = adapter, setup.cond["text"], {}, []

    def predict_x0(self, x, table, step, items):
        out = self.adapter.predict_x0(x, table, step, items)
        row = next(r for r in range(len(self.rows)) if torch.equal(items.cond["text"][0], self.rows[r]))
        self.x0[step, items.windows[0], row] = out[0]
        self.calls.append((x.clone(), table, step, items, out))
        return out


def recorded_items(renderer, scene) -> ItemRecorder:
    """Every item of the scene's render, run with `max_batch: 1`."""
    prepared = renderer.prepare(scene)
    recorder = ItemRecorder(prepared.adapter, prepared.setup)
    generators = [torch.Generator().set_state(state) for state in prepared.generator_states]
    list(sample(recorder, prepared.setup, prepared.x, generators))
    return recorder


def item_x0(renderer, scene) -> dict:
    """Every item's x0 of the scene's render, keyed by (step, window, region row): run with `max_batch: 1`."""
    return recorded_items(renderer, scene).x0


def edges_picture(path: Path, width: int, height: int) -> Path:
    """A control picture with structure: white lines on black."""
    from PIL import Image

    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[::12] = 255
    pixels[:, ::20] = 255
    Image.fromarray(pixels).save(path)
    return path


def black_picture(path: Path, width: int, height: int) -> Path:
    """A black control picture: what a ControlNet gives when the picture shows nothing."""
    from PIL import Image

    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)
    return path


def halves_picture(path: Path, width: int, height: int) -> Path:
    """A control picture whose halves differ: black on the left; on the right red columns and green rows on blue,
    so that a crop tells its half, its channel order and its scale."""
    from PIL import Image

    pixels = np.zeros((height, width, 3), np.uint8)
    right = pixels[:, width // 2:]
    right[..., 2] = 160
    right[:, ::6, 0] = 255
    right[::5, :, 1] = 255
    Image.fromarray(pixels).save(path)
    return path


def check_control_crops(renderer, scene, expected: Callable, margin: float = 1e-2) -> None:
    """A scene of two windows and one ControlNet, run with `max_batch: 1`: each item's ControlNet input is
    `expected(adapter, window)`, its own window's crop, and the other window's crop would move its x0 by more than
    `margin` on average (100 times the parity tests' 1e-4), so a wrong crop cannot pass."""
    recorder = recorded_items(renderer, scene)
    windows = {items.windows[0] for _, _, _, items, _ in recorder.calls}
    assert len(windows) == 2, windows
    for x, table, step, items, x0 in recorder.calls:
        (control,) = items.controls
        own, other = items.windows[0], next(w for w in windows if w != items.windows[0])
        torch.testing.assert_close(control.image[0], expected(recorder.adapter, own), atol=0, rtol=0)
        swapped = dataclasses.replace(control, image=expected(recorder.adapter, other)[None].to(control.image))
        moved = recorder.adapter.predict_x0(x, table, step, dataclasses.replace(items, controls=(swapped,))) - x0
        assert moved.abs().mean() > margin, (own, float(moved.abs().mean()))
