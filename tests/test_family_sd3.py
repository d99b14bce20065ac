"""SD3 adapter on the tiny preset: parity with diffusers' pipeline, region placement, scenes, clear errors."""

import dataclasses

import pytest
import torch

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import presets, sd3
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Model, Tile
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
FLASH = registry.accelerators()["flash"]


def sd3_scene(width, height, regions, drop_t5=False, **sampler):
    sampler = {"steps": tuple(range(FLASH.grid)), "grid": FLASH.grid, "guidance": FLASH.guidance, **sampler}
    scene = make_scene(width, height, regions, **sampler)
    model = Model("sd3", "tiny", Accelerator("flash", FLASH.lora, FLASH.weight_name, 1.0), drop_t5=drop_t5)
    return dataclasses.replace(scene, model=model)


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


def pipeline(drop_t5: bool):
    from diffusers import StableDiffusion3Pipeline

    folder = presets.ensure_preset("sd3", "tiny")
    kwargs = {"text_encoder_3": None, "tokenizer_3": None} if drop_t5 else {}
    pipe = StableDiffusion3Pipeline.from_pretrained(folder, **kwargs)
    pipe.load_lora_weights(folder / "accelerators" / "flash", adapter_name="accelerator")
    pipe.fuse_lora(lora_scale=1.0, adapter_names=["accelerator"])
    pipe.unload_lora_weights()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("drop_t5, guidance", [(False, 0.0), (True, 3.0)])
def test_single_region_equals_diffusers_pipeline(renderer, drop_t5, guidance):
    """Flow-matching Euler, 4 steps (shift 3); with T5, and without it (zeros) under guidance."""
    scene = sd3_scene(128, 96, [region("a red apple", rect(0, 0, 1, 1, fractional=True))], drop_t5,
                      bootstrap=Bootstrap(0, 1.0, 0.2), guidance=guidance)
    ours = renderer.render(scene)[0].latent
    table = renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas)
    pipe = pipeline(drop_t5)
    theirs = pipe(
        "a red apple", height=96, width=128, num_inference_steps=4, guidance_scale=guidance,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent",
    ).images[0]
    assert table.timesteps == tuple(float(t) for t in pipe.scheduler.timesteps)  # shift 3: 1000, 857.7, 602.2, 8.9
    assert ours.shape == theirs.shape == (16, 12, 16)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_step_table_is_flow_form(renderer):
    scene = sd3_scene(64, 64, [region("x", rect(0, 0, 1, 1, fractional=True))])
    table = renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas)
    assert table.noise[0] == 1.0 and table.signal[0] == 0.0  # pure noise: the initial latent is eps
    for a, s, level in zip(table.signal, table.noise, table.mask_levels):
        assert a + s == pytest.approx(1.0)
        assert level == pytest.approx(s / (1 + s * s) ** 0.5)
    assert (table.signal[-1], table.noise[-1]) == (1.0, 0.0) and not table.stochastic


def test_regions_land_in_their_masks(renderer):
    scene = sd3_scene(64, 64, [region("x", rect(0, 0, 1, 1, fractional=True))])
    check_oracle_placement(renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas), channels=16)


@pytest.mark.parametrize("path", scene_files("sd3"), ids=lambda p: p.name)
def test_example_scene_renders_with_tiny_model(path, tmp_path):
    image = render_scene_file(path, tmp_path)
    assert image.shape[0] >= 1024 and image.std() > 1.0


def test_window_not_divisible_by_patches_is_refused(renderer):
    scene = sd3_scene(120, 96, [region("x", rect(0, 0, 1, 1, fractional=True))], tile=Tile(120, 64))
    with pytest.raises(RenderError, match="multiples of 16 px"):
        renderer.render(scene)


def test_lora_of_another_family_is_refused():
    lcm = presets.ensure_preset("sd15", "tiny") / "accelerators" / "lcm"
    scene = sd3_scene(64, 64, [region("x", rect(0, 0, 1, 1, fractional=True))])
    model = dataclasses.replace(scene.model, accelerator=Accelerator("lora", str(lcm)))
    scene = dataclasses.replace(scene, model=model)
    with pytest.raises(RenderError, match="does not fit a sd3 model"):
        Renderer(device="cpu", dtype="float32").render(scene)


def test_sdxl_checkpoint_with_family_sd3_is_refused():
    folder = presets.ensure_preset("sdxl", "tiny")
    with pytest.raises(RenderError, match="is a checkpoint of the sdxl family.*model.family: sdxl"):
        sd3.load_pipeline(Model("sd3", str(folder), Accelerator("none")), torch.float32)


def test_checkpoint_without_t5_asks_for_drop_t5(tmp_path):
    import json
    import shutil

    folder = tmp_path / "no-t5"
    shutil.copytree(presets.ensure_preset("sd3", "tiny"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder_3"] = index["tokenizer_3"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(RenderError, match="drop_t5: true"):
        sd3.load_pipeline(Model("sd3", str(folder), Accelerator("none")), torch.float32)
    sd3.load_pipeline(Model("sd3", str(folder), Accelerator("none"), drop_t5=True), torch.float32)


def test_lora_in_peft_format_is_fused_like_peft_merges_it(tmp_path):
    """Flash SD3 ships as a PEFT adapter (adapter_config.json, base_model.model.* keys, lora_alpha ≠ r)."""
    from diffusers import SD3Transformer2DModel
    from peft import LoraConfig, PeftModel, get_peft_model

    folder = presets.ensure_preset("sd3", "tiny")
    base = SD3Transformer2DModel.from_pretrained(folder / "transformer")
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_v", "add_k_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = PeftModel.from_pretrained(SD3Transformer2DModel.from_pretrained(folder / "transformer"),
                                       tmp_path / "adapter").merge_and_unload()
    model = Model("sd3", "tiny", Accelerator("lora", str(tmp_path / "adapter")), drop_t5=True)
    fused = sd3.load_pipeline(model, torch.float32).transformer
    ours, theirs = fused.state_dict(), merged.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-6, rtol=1e-5, msg=key)
    original = SD3Transformer2DModel.from_pretrained(folder / "transformer").state_dict()
    key = "transformer_blocks.0.attn.to_q.weight"
    assert (ours[key] - original[key]).abs().max() > 1e-3  # the adapter did change the weights


def test_sd3_checkpoint_with_family_sd15_is_refused_before_loading():
    from semanticdraw_cli.families.registry import load_adapter

    folder = presets.ensure_preset("sd3", "tiny")
    with pytest.raises(RenderError, match="is a checkpoint of the sd3 family, but model.family is sd15; set model.family: sd3"):
        load_adapter(Model("sd15", str(folder), Accelerator("none")), torch.device("cpu"), torch.float32)


@pytest.mark.real_checkpoint
@real_checkpoint_skip(registry.family("sd3").checkpoint, FLASH.lora, "adapter_model.safetensors")
def test_real_flash_sd3_without_t5_equals_pipeline_on_gpu():
    from diffusers import StableDiffusion3Pipeline
    from peft import PeftModel

    scene = sd3_scene(1024, 1024, [region("an apple tree in bloom", rect(0, 0, 1, 1, fractional=True))],
                      drop_t5=True, bootstrap=Bootstrap(0, 1.0, 0.2))
    scene = dataclasses.replace(scene, model=dataclasses.replace(scene.model, checkpoint=registry.family("sd3").checkpoint))
    result = Renderer(device="cuda", dtype="float16").render(scene)[0]
    assert result.image.std() > 5
    pipe = StableDiffusion3Pipeline.from_pretrained(scene.model.checkpoint, text_encoder_3=None, tokenizer_3=None,
                                                    dtype=torch.float16)
    pipe.transformer = PeftModel.from_pretrained(pipe.transformer, FLASH.lora).merge_and_unload()  # model card's way
    pipe.to("cuda")
    theirs = pipe("an apple tree in bloom", num_inference_steps=4, guidance_scale=0.0, output_type="latent",
                  generator=torch.Generator("cpu").manual_seed(scene.sampler.seed)).images[0]
    assert_close_in_float16(result.latent, theirs.float().cpu())


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_no_small_preset_for_the_newer_families(family):
    with pytest.raises(RenderError, match=f"the {family} family has the presets tiny, full-random, not 'small'"):
        presets.ensure_preset(family, "small")
    assert not list(presets.cache_root().glob(f"presets/*{family}-small*"))  # no half-built folder left


def test_a_full_canvas_region_with_a_lora_equals_the_pipeline_with_it_loaded(renderer, tmp_path):
    """A region LoRA (a PEFT adapter beside the fused Flash LoRA) is the pipeline with the LoRA loaded."""
    from lora_files import make_lora
    from semanticdraw_cli.scene.loras import file_digest
    from semanticdraw_cli.scene.types import RegionLora

    lora = make_lora("sd3", tmp_path / "style.safetensors", scale=0.2)
    apple = region("a red apple", rect(0, 0, 1, 1, fractional=True),
                   loras=(RegionLora(str(lora), 0.6, None, file_digest(lora)),))
    scene = sd3_scene(128, 96, [apple], bootstrap=Bootstrap(0, 1.0, 0.2))
    ours = renderer.render(scene)[0].latent
    pipe = pipeline(False)
    pipe.load_lora_weights(str(lora), adapter_name="region")
    pipe.set_adapters(["region"], [0.6])
    theirs = pipe("a red apple", height=96, width=128, num_inference_steps=4, guidance_scale=0.0,
                  generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent").images[0]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
