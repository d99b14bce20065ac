"""Stable Diffusion 2.x: SD1.5's pipeline and UNet layout with an OpenCLIP text encoder, mostly v-prediction.

SD 2.x checkpoints load through the same `StableDiffusionPipeline` as SD1.5 and differ in what the UNet
predicts: SD 2.1 (768-v) predicts v = a·eps − s·x0, which `SD15Adapter` reads from the scheduler config's
`prediction_type` and `families.prediction` turns into x0. So this family is defaults only: the 2.1
checkpoint, 768 px windows, and no few-step accelerator (`accelerator: none`, the checkpoint's DDIM,
25 steps with guidance 7.5). The `tiny` preset is SD1.5's tiny layout with SD 2.1's v-prediction DDIM
scheduler config.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.families import presets, sd15
from semanticdraw_cli.families.base import FamilySpec
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.scene.types import Model
else:
    torch = lazy_module("torch")


def load(model: Model, device: torch.device, dtype: torch.dtype) -> sd15.SD15Adapter:
    return sd15.SD15Adapter(sd15.load_pipeline(model, dtype, "sd2"), model, device, dtype)


def v_prediction_scheduler():
    """stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json: DDIM over SD's scaled-linear betas, v-prediction."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="v_prediction",
    )


def build_preset(name: str, folder: Path) -> None:
    """SD1.5's tiny layout with seeded random weights, sampling as SD 2.1 does (v-prediction DDIM)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED)
        sd15.build_pipeline(name, folder, v_prediction_scheduler()).save_pretrained(folder)


SPEC = FamilySpec(
    name="sd2",
    pipeline_class="StableDiffusionPipeline",
    components=("unet", "text_encoder"),
    checkpoint="stabilityai/stable-diffusion-2-1",
    tiny_autoencoder="madebyollin/taesd",  # TAESD for model.preview_decoder: tiny-ae
    accelerator="none",
    accelerators={},
    tile_size=768,
    tile_stride=384,
    own_scheduler_steps=25,
    own_scheduler_grid=25,
    own_scheduler="ddim",
    schedulers=("ddim", "lcm", "euler-trailing"),
    load=load,
    build_preset=build_preset,
)
