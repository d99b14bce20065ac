"""SDXL adapter on the tiny preset: parity with diffusers' pipeline, region placement, scenes, clear errors."""

import dataclasses

import pytest
import torch

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import presets, sdxl
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Model
from semanticdraw_cli import defaults as d
from semanticdraw_cli.families import registry
from family_checks import (
    assert_close_in_float16,
    check_oracle_placement,
    real_checkpoint_skip,
    render_scene_file,
    scene_files,
)
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow


def sdxl_scene(width, height, regions, accelerator="lightning", **sampler):
    spec = registry.accelerators()[accelerator]
    sampler = {"steps": tuple(range(spec.grid)), "grid": spec.grid, "guidance": spec.guidance, **sampler}
    scene = make_scene(width, height, regions, **sampler)
    model = Model("sdxl", "tiny", Accelerator(accelerator, spec.lora, spec.weight_name, 1.0))
    return dataclasses.replace(scene, model=model)


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


def pipeline(accelerator: str):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    folder = presets.ensure_preset("sdxl", "tiny")
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.load_lora_weights(folder / "accelerators" / accelerator, adapter_name="accelerator")
    pipe.fuse_lora(lora_scale=1.0, adapter_names=["accelerator"])
    pipe.unload_lora_weights()
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("accelerator, guidance", [("lightning", 1.0), ("hyper", 3.0)])
def test_single_region_equals_diffusers_pipeline(renderer, accelerator, guidance):
    """Euler trailing, 4 steps; guidance > 1 with an empty negative (zeros, as the pipeline's default)."""
    scene = sdxl_scene(128, 96, [region("a red apple", rect(0, 0, 1, 1, fractional=True))], accelerator,
                       bootstrap=Bootstrap(0, 1.0, 0.2), guidance=guidance)
    ours = renderer.render(scene)[0].latent
    table = renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas)
    assert table.timesteps == (999.0, 749.0, 499.0, 249.0)
    theirs = pipeline(accelerator)(
        "a red apple", height=96, width=128, num_inference_steps=4, guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent",
    ).images[0]
    assert ours.shape == theirs.shape == (4, 12, 16)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_a_lora_with_scheduler_lcm_samples_as_the_lcm_pipeline(renderer):
    """`{lora: ..., scheduler: lcm}` on SDXL: LCM timesteps, boundary condition and re-noising, as diffusers'
    StableDiffusionXLPipeline with an LCMScheduler."""
    from diffusers import LCMScheduler

    lcm = d.SCHEDULERS["lcm"]
    scene = sdxl_scene(128, 96, [region("a red apple", rect(0, 0, 1, 1, fractional=True))],
                       bootstrap=Bootstrap(0, 1.0, 0.2), steps=lcm.steps, grid=lcm.grid, guidance=lcm.guidance)
    lora = presets.ensure_preset("sdxl", "tiny") / "accelerators" / "lightning"
    scene = dataclasses.replace(scene, model=Model("sdxl", "tiny", Accelerator("lora", str(lora), scheduler="lcm")))
    ours = renderer.render(scene)[0].latent
    table = renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas)
    assert table.stochastic and table.timesteps == (999, 919, 759, 499, 259)
    pipe = pipeline("lightning")
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    theirs = pipe(
        "a red apple", height=96, width=128, timesteps=list(table.timesteps), guidance_scale=1.0,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent",
    ).images[0]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_step_table_is_vp_form_of_euler(renderer):
    scene = sdxl_scene(64, 64, [region("x", rect(0, 0, 1, 1, fractional=True))])
    table = renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas)
    for a, s in zip(table.signal, table.noise):
        assert a * a + s * s == pytest.approx(1.0)
    assert (table.signal[-1], table.noise[-1], table.mask_levels[-1]) == (1.0, 0.0, 0.0)
    assert table.mask_levels[:-1] == table.noise[:-1] and not table.stochastic
    assert table.init_scale == pytest.approx(table.noise[0])  # Euler trailing starts at σ_max·eps


def test_regions_land_in_their_masks(renderer):
    scene = sdxl_scene(64, 64, [region("x", rect(0, 0, 1, 1, fractional=True))])
    check_oracle_placement(renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas))


def test_size_conditioning_is_the_window_as_a_whole_picture(renderer):
    from semanticdraw_cli.tiles import Window

    scene = sdxl_scene(64, 64, [region("x", rect(0, 0, 1, 1, fractional=True))])
    ids = renderer.adapter(scene)[0].time_ids([Window(0, 0, 128, 96), Window(64, 32, 96, 128)])
    assert ids.tolist() == [[1024, 768, 0, 0, 1024, 768], [768, 1024, 0, 0, 768, 1024]]


@pytest.mark.parametrize("path", scene_files("sdxl"), ids=lambda p: p.name)
def test_example_scene_renders_with_tiny_model(path, tmp_path):
    image = render_scene_file(path, tmp_path)
    assert image.shape[0] >= 1024 and image.std() > 1.0  # not a flat (black/NaN-clamped) picture


@pytest.mark.parametrize("family, name", [("sd15", "lcm"), ("sd3", "flash")])
def test_lora_of_another_family_is_refused(family, name):
    """sd15's LoRA has SDXL's layer names at other shapes; sd3's matches no layer at all."""
    lora = presets.ensure_preset(family, "tiny") / "accelerators" / name
    scene = sdxl_scene(64, 64, [region("x", rect(0, 0, 1, 1, fractional=True))])
    model = dataclasses.replace(scene.model, accelerator=Accelerator("lora", str(lora)))
    scene = dataclasses.replace(scene, model=model)
    with pytest.raises(RenderError, match="does not fit a sdxl model"):
        Renderer(device="cpu", dtype="float32").render(scene)


def test_sd15_checkpoint_with_family_sdxl_is_refused():
    folder = presets.ensure_preset("sd15", "tiny")
    model = Model("sdxl", str(folder), Accelerator("none"))
    with pytest.raises(RenderError, match="is a checkpoint of the sd15 family.*model.family: sd15"):
        sdxl.load_pipeline(model, torch.float32)


def test_checkpoint_without_first_text_encoder_is_refused(tmp_path):
    """A refiner-like folder (text_encoder_2 only) names what is missing."""
    import json
    import shutil

    folder = tmp_path / "refiner"
    shutil.copytree(presets.ensure_preset("sdxl", "tiny"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder"] = index["tokenizer"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(RenderError, match="no first text encoder"):
        sdxl.load_pipeline(Model("sdxl", str(folder), Accelerator("none")), torch.float32)


def test_float16_model_decodes_with_a_float32_vae():
    """The SDXL VAE overflows in float16 (black/NaN pictures); force_upcast in its config moves it to float32."""
    denoiser = sdxl.load(Model("sdxl", "tiny", Accelerator("none")), torch.device("cpu"), torch.float16)
    assert denoiser.unet.dtype == torch.float16 and denoiser.codec.upcast
    image = denoiser.decode(torch.zeros(1, 4, 8, 8))
    assert denoiser.codec.vae.dtype == torch.float32 and image.shape == (1, 64, 64, 3)


def test_cli_exits_1_naming_the_family_of_a_mismatched_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from semanticdraw_cli.cli.app import app

    sd15 = presets.ensure_preset("sd15", "tiny")
    scene = scene_files("sdxl")[0]
    args = ["render", str(scene), "--model", str(sd15), "-o", str(tmp_path), "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "is a checkpoint of the sd15 family" in result.output and "set model.family: sd15" in result.output
    assert "Traceback" not in result.output and not list(tmp_path.iterdir())


LIGHTNING = registry.accelerators()["lightning"]


@pytest.mark.real_checkpoint
@real_checkpoint_skip(registry.family("sdxl").checkpoint, LIGHTNING.lora, LIGHTNING.weight_name)
def test_real_sdxl_lightning_equals_pipeline_on_gpu(tmp_path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    scene = sdxl_scene(1024, 1024, [region("a lighthouse at dusk", rect(0, 0, 1, 1, fractional=True))],
                       bootstrap=Bootstrap(0, 1.0, 0.2))
    scene = dataclasses.replace(scene, model=dataclasses.replace(scene.model, checkpoint=registry.family("sdxl").checkpoint))
    result = Renderer(device="cuda", dtype="float16").render(scene)[0]
    assert result.image.std() > 5  # not black: the VAE ran in float32
    pipe = StableDiffusionXLPipeline.from_pretrained(scene.model.checkpoint, dtype=torch.float16).to("cuda")
    pipe.load_lora_weights(LIGHTNING.lora, weight_name=LIGHTNING.weight_name)
    pipe.fuse_lora()
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    theirs = pipe("a lighthouse at dusk", num_inference_steps=4, guidance_scale=1.0, output_type="latent",
                  generator=torch.Generator("cpu").manual_seed(scene.sampler.seed)).images[0]
    assert_close_in_float16(result.latent, theirs.float().cpu())


def test_a_full_canvas_region_with_a_lora_equals_the_pipeline_with_it_loaded(renderer, tmp_path):
    """A region LoRA (a PEFT adapter beside the fused Lightning LoRA) is the pipeline with the LoRA loaded."""
    from lora_files import make_lora
    from semanticdraw_cli.scene.loras import file_digest
    from semanticdraw_cli.scene.types import RegionLora

    lora = make_lora("sdxl", tmp_path / "style.safetensors", scale=0.2)
    fox = region("a red apple", rect(0, 0, 1, 1, fractional=True),
                 loras=(RegionLora(str(lora), 0.6, None, file_digest(lora)),))
    scene = sdxl_scene(128, 96, [fox], "lightning", bootstrap=Bootstrap(0, 1.0, 0.2))
    ours = renderer.render(scene)[0].latent
    pipe = pipeline("lightning")
    pipe.load_lora_weights(str(lora), adapter_name="region")
    pipe.set_adapters(["region"], [0.6])
    theirs = pipe("a red apple", height=96, width=128, num_inference_steps=4, guidance_scale=1.0,
                  generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent").images[0]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
