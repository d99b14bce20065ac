"""The sampler reduces to diffusers' own pipelines where the algorithm does (tiny model, CPU)."""

import dataclasses

import pytest
import torch

from semanticdraw_cli.families import presets
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene import Accelerator, Bootstrap
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


def lcm_pipeline():
    from diffusers import LCMScheduler, StableDiffusionPipeline

    folder = presets.ensure_preset("sd15", "tiny")
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(folder / "accelerators" / "lcm", adapter_name="accelerator")
    pipe.fuse_lora(lora_scale=1.0, adapter_names=["accelerator"])
    pipe.unload_lora_weights()
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_single_region_lcm_equals_diffusers_pipeline(renderer):
    scene = make_scene(128, 96, [region("a red apple", rect(0, 0, 1, 1, fractional=True))],
                       bootstrap=Bootstrap(0, 1.0, 0.2))
    ours = renderer.render(scene)[0].latent
    timesteps = list(renderer.denoiser(scene)[0].step_table(scene.sampler).timesteps)
    assert timesteps == [999, 919, 759, 499, 259]
    pipe = lcm_pipeline()
    theirs = pipe(
        "a red apple", height=96, width=128, timesteps=timesteps, guidance_scale=1.0,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent",
    ).images[0]
    assert ours.shape == theirs.shape == (4, 12, 16)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
