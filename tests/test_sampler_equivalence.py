"""The sampler reduces to diffusers' own pipelines where the algorithm does (tiny model, CPU)."""

import dataclasses

import numpy as np
import pytest
import torch

from semanticdraw_cli.families import presets
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Accelerator, Background, Bootstrap
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
    timesteps = list(renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas).timesteps)
    assert timesteps == [999, 919, 759, 499, 259]
    pipe = lcm_pipeline()
    theirs = pipe(
        "a red apple", height=96, width=128, timesteps=timesteps, guidance_scale=1.0,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent",
    ).images[0]
    assert ours.shape == theirs.shape == (4, 12, 16)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_multidiffusion_equals_diffusers_panorama_pipeline(renderer):
    """Classic MD (DDIM, guidance 7.5, 64-latent windows, stride 8) is diffusers' panorama pipeline."""
    from diffusers import DDIMScheduler, StableDiffusionPanoramaPipeline

    scene = make_scene(
        768, 512, [region("a mountain range", rect(0, 0, 1, 1, fractional=True))],
        method="multidiffusion", steps=tuple(range(4)), grid=4, guidance=7.5,
        tile=dataclasses.replace(make_scene(8, 8, []).sampler.tile, size=512, stride=64),
    )
    scene = dataclasses.replace(scene, model=dataclasses.replace(scene.model, accelerator=Accelerator("none")))
    result = renderer.render(scene)[0]
    assert result.report["network_calls"] == 4  # 5 windows fit one batch per step
    assert result.report["batch_items"] == 4 * 5 * 2  # steps x windows x guidance branches
    folder = presets.ensure_preset("sd15", "tiny")
    pipe = StableDiffusionPanoramaPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        "a mountain range", height=512, width=768, num_inference_steps=4, guidance_scale=7.5,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent",
    ).images[0]
    torch.testing.assert_close(result.latent, theirs, atol=1e-4, rtol=1e-4)


def test_guidance_one_without_unconditional_branch_equals_cfg_at_scale_one(renderer):
    """Skipping the unconditional branch at guidance 1 changes cost, not the image."""
    scene = make_scene(128, 96, [region("a boat", rect(0, 0, 1, 1, fractional=True), negative="blurry")])
    fast = renderer.render(scene)[0]
    doubled = renderer.render(dataclasses.replace(scene, sampler=dataclasses.replace(scene.sampler, plan="reference")))[0]
    assert doubled.report["batch_items"] == 2 * fast.report["batch_items"]
    torch.testing.assert_close(fast.latent, doubled.latent, atol=1e-4, rtol=1e-4)


def test_same_seed_same_pixels_other_seed_other_pixels(renderer):
    scene = make_scene(128, 96, [region("a cat", rect(0.1, 0.1, 0.5, 0.6, fractional=True)),
                                 region("a dog", rect(0.5, 0.3, 0.45, 0.6, fractional=True))])
    first, again = renderer.render(scene)[0], renderer.render(scene)[0]
    other = renderer.render(dataclasses.replace(scene, sampler=dataclasses.replace(scene.sampler, seed=7)))[0]
    assert (first.image == again.image).all()
    assert (first.image != other.image).mean() > 0.5


def test_images_batched_together_equal_images_rendered_alone(renderer):
    """--images N shares UNet batches; each image still depends only on its own seed."""
    scene = make_scene(128, 96, [region("a cat", rect(0.1, 0.1, 0.5, 0.6, fractional=True))])
    together = renderer.render(dataclasses.replace(scene, sampler=dataclasses.replace(scene.sampler, images=3)))
    alone = renderer.render(scene, seeds=[scene.sampler.seed + 2])[0]
    assert [r.seed for r in together] == [2024, 2025, 2026]
    assert together[0].report["network_calls"] == alone.report["network_calls"]
    assert alone.report["seconds"]["load"] == 0.0  # the renderer keeps the model of earlier scenes
    torch.testing.assert_close(together[2].latent, alone.latent, atol=1e-4, rtol=1e-4)


CAT = region("a cat", rect(16, 16, 64, 56), blur=0.0)  # on latent pixel edges: no partly covered pixel
MEADOW = region("a meadow", rect(0, 0, 1, 1, fractional=True), blur=0.0)  # drawn under the cat: covers the rest


SOFT_CAT = region("a cat", rect(16, 16, 64, 56), blur=6.0)  # soft edges: partly covered while its mask grows


def pulled_pixels(setup) -> str | int:
    """How the sampler's x0 leans to the fill: "everywhere" (a picture), or the count of pixel-steps."""
    if setup.pull_to_fill is None:
        return "everywhere"
    return sum(int(step.sum()) for step in setup.pull_to_fill if step is not False)


@pytest.mark.parametrize("background, under, top, pulled", [
    (Background(), [], CAT, 5 * (12 * 16 - 8 * 7)),  # 5 steps x the latent pixels outside the 8x7 cat: white fill
    (Background(prompt="a meadow"), [], CAT, 0),  # the authors' normalisation by the summed weights
    (Background(), [MEADOW], CAT, 0),  # no background prompt, but every pixel covered at every step: the same
    (Background(prompt="a meadow", image_array=np.full((96, 128, 3), 90, np.uint8)), [], CAT, "everywhere"),
])
def test_the_render_leans_to_the_fill_only_where_no_mask_covers_and_everywhere_over_a_picture(
    renderer, monkeypatch, background, under, top, pulled
):
    from semanticdraw_cli import render as render_module

    seen, original = [], render_module.sample

    def recording_sample(denoiser, setup, x, generators):
        seen.append(setup)
        return original(denoiser, setup, x, generators)

    monkeypatch.setattr(render_module, "sample", recording_sample)
    scene = make_scene(128, 96, [*under, top], background=background)
    renderer.render(scene)
    assert [pulled_pixels(setup) for setup in seen] == [pulled]


def test_a_covering_region_under_a_soft_edged_one_leans_to_white_only_at_the_uncovered_edge(renderer, monkeypatch):
    """The authors' README form with blurred regions on top: while the soft cat's mask grows, its edge is
    covered neither by the cat nor by the meadow under it (kept at cover_alpha). Only those pixels may lean
    to white; everything the masks cover is normalised."""
    from semanticdraw_cli import render as render_module

    seen, original = [], render_module.sample
    monkeypatch.setattr(render_module, "sample", lambda d, s, x, g: seen.append(s) or original(d, s, x, g))
    renderer.render(make_scene(128, 96, [MEADOW, SOFT_CAT]))
    pulls = [step for step in seen[0].pull_to_fill if step is not False]
    assert pulls, "a soft edge leaves pixels uncovered at the early steps"
    for step in pulls:
        rows, cols = step[0].nonzero(as_tuple=True)
        assert 0 < len(rows) < 0.25 * 12 * 16  # a band, not the canvas
        assert rows.min() >= 0 and rows.max() <= 9 and cols.min() >= 0 and cols.max() <= 10  # around the cat


def test_a_background_given_as_a_covering_region_renders_as_the_background_prompt(renderer):
    """The authors' README form (the background as the first region, blur 0) quantizes to the same masks as a
    background prompt, so it normalises the same way: the same latent, not one pulled towards white. A high
    leak sensitivity makes every bootstrap weight small, as weak predictions do, so the two rules differ."""
    weak = Bootstrap(1, 1.0, 1000.0)
    as_prompt = renderer.render(make_scene(128, 96, [CAT], background=Background(prompt="a meadow"), bootstrap=weak))[0]
    as_region = renderer.render(make_scene(128, 96, [MEADOW, CAT], bootstrap=weak))[0]
    white = renderer.render(make_scene(128, 96, [CAT], bootstrap=weak))[0]  # uncovered: pulled towards white
    assert torch.equal(as_region.latent, as_prompt.latent)
    assert (white.latent - as_prompt.latent).abs().mean() > 0.1
