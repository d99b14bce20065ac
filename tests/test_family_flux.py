"""FLUX.1 adapter on the tiny preset: parity with FluxPipeline (schnell and dev layouts), region placement,
the example scene, clear errors."""

import dataclasses
import json
import shutil

import pytest
import torch

from semanticdraw_cli.errors import RenderError, SceneError
from semanticdraw_cli.families import flux, presets, registry
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Model, Tile
from semanticdraw_cli.scene.loader import scene_from_dict
from family_checks import check_oracle_placement, render_scene_file, scene_files
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow
SCHNELL = registry.accelerators()["schnell"]
WHOLE = rect(0, 0, 1, 1, fractional=True)


def flux_scene(width, height, regions, checkpoint="tiny", accelerator=Accelerator("schnell"), **options):
    sampler = {"steps": tuple(range(SCHNELL.grid)), "grid": SCHNELL.grid, "guidance": SCHNELL.guidance,
               "bootstrap": Bootstrap(0, 1.0, 0.2), "tile": Tile(1024, 512)}
    sampler |= {key: options.pop(key) for key in list(options) if key in ("guidance", "tile", "steps", "grid", "plan")}
    scene = make_scene(width, height, regions, **sampler)
    return dataclasses.replace(scene, model=Model("flux", checkpoint, accelerator, **options))


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def dev_folder(tmp_path_factory):
    """The tiny preset as FLUX.1-dev ships: a guidance embedding and a resolution-dependent shift (3.0)."""
    from diffusers import FluxTransformer2DModel

    folder = tmp_path_factory.mktemp("flux") / "dev"
    shutil.copytree(presets.ensure_preset("flux", "tiny"), folder)
    config = dict(FluxTransformer2DModel.load_config(folder / "transformer"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        transformer = FluxTransformer2DModel.from_config({**config, "guidance_embeds": True})
    transformer.save_pretrained(folder / "transformer")
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler = json.loads(scheduler_file.read_text())
    scheduler_file.write_text(json.dumps({**scheduler, "shift": 3.0, "use_dynamic_shifting": True}))
    return folder


def pipeline(folder=None):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(folder or presets.ensure_preset("flux", "tiny"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def unpacked(latents, height, width):
    from diffusers import FluxPipeline

    return FluxPipeline._unpack_latents(latents, height, width, 8)[0]


@pytest.mark.parametrize("guidance, text_tokens", [(0.0, None), (3.0, 64)])
def test_single_region_equals_flux_pipeline(renderer, guidance, text_tokens):
    """Schnell layout, 4 steps, static shift; guidance > 1 is the pipeline's true CFG with an empty negative."""
    scene = flux_scene(128, 96, [region("a red apple", WHOLE)], guidance=guidance, text_tokens=text_tokens)
    ours = renderer.render(scene)[0].latent
    pipe = pipeline()
    cfg = {"true_cfg_scale": guidance, "negative_prompt": ""} if guidance > 1 else {}
    theirs = pipe(
        "a red apple", height=96, width=128, num_inference_steps=4, guidance_scale=0.0, output_type="latent",
        max_sequence_length=text_tokens or flux.T5_TOKENS,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), **cfg,
    ).images
    assert renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas).timesteps == (1000.0, 750.0, 500.0, 250.0)
    assert ours.shape == (16, 12, 16)
    torch.testing.assert_close(ours, unpacked(theirs, 96, 128), atol=1e-4, rtol=1e-4)


def test_dev_guidance_feeds_the_embedding_and_the_shift_follows_the_tile(renderer, dev_folder):
    """FLUX.1-dev: sampler.guidance is the distilled guidance input (no unconditional branch, no doubled
    batch), and the shift comes from calculate_shift of the window's tokens (tile and canvas: 128 px)."""
    scene = flux_scene(128, 128, [region("a red apple", WHOLE)], str(dev_folder), Accelerator("none"),
                       guidance=3.5, tile=Tile(128, 64))
    result = renderer.render(scene)[0]
    adapter = renderer.adapter(scene)[0]
    assert not adapter.cfg_guidance and result.report["batch_items"] == 4  # one item per step
    pipe = pipeline(dev_folder)
    theirs = pipe("a red apple", height=128, width=128, num_inference_steps=4, guidance_scale=3.5,
                  output_type="latent", generator=torch.Generator("cpu").manual_seed(scene.sampler.seed)).images
    assert adapter.step_table(scene.sampler, scene.canvas).timesteps == tuple(float(t) for t in pipe.scheduler.timesteps)
    torch.testing.assert_close(result.latent, unpacked(theirs, 128, 128), atol=1e-4, rtol=1e-4)
    bigger = dataclasses.replace(scene.sampler, tile=Tile(1024, 512))
    large = dataclasses.replace(scene.canvas, width=1024, height=1024)
    assert adapter.step_table(bigger, large).noise[1] > adapter.step_table(scene.sampler, scene.canvas).noise[1]  # more tokens, more shift


def test_dev_on_a_canvas_smaller_than_the_tile_is_shifted_for_its_own_size(renderer, dev_folder):
    """The resolution-dependent mu follows the window the model sees: a 128×96 canvas under a 1024 px tile is
    one 128×96 window, and FluxPipeline shifts for 128×96."""
    scene = flux_scene(128, 96, [region("a red apple", WHOLE)], str(dev_folder), Accelerator("none"), guidance=3.5)
    assert scene.sampler.tile.size == 1024
    result = renderer.render(scene)[0]
    pipe = pipeline(dev_folder)
    theirs = pipe("a red apple", height=96, width=128, num_inference_steps=4, guidance_scale=3.5,
                  output_type="latent", generator=torch.Generator("cpu").manual_seed(scene.sampler.seed)).images
    table = renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas)
    assert table.timesteps == tuple(float(t) for t in pipe.scheduler.timesteps)
    torch.testing.assert_close(result.latent, unpacked(theirs, 96, 128), atol=1e-4, rtol=1e-4)


def test_without_t5_the_text_is_zeros_as_given_to_the_pipeline(renderer):
    scene = flux_scene(64, 64, [region("a red apple", WHOLE)], drop_t5=True)
    ours = renderer.render(scene)[0].latent
    pipe = pipeline()
    pooled = pipe._get_clip_prompt_embeds("a red apple", device=torch.device("cpu"))
    theirs = pipe(prompt_embeds=torch.zeros(1, flux.T5_TOKENS, flux.TINY_T5), pooled_prompt_embeds=pooled,
                  height=64, width=64, num_inference_steps=4, guidance_scale=0.0, output_type="latent",
                  generator=torch.Generator("cpu").manual_seed(scene.sampler.seed)).images
    torch.testing.assert_close(ours, unpacked(theirs, 64, 64), atol=1e-4, rtol=1e-4)


def test_packing_round_trips_and_ids_count_from_each_window(renderer):
    x = torch.randn(2, 16, 6, 8)
    tokens = flux.pack(x)
    assert tokens.shape == (2, 12, 64) and torch.equal(flux.unpack(tokens, 6, 8), x)
    ids = flux.image_ids(3, 4, torch.device("cpu"))
    assert ids.shape == (12, 3) and ids[0].tolist() == [0, 0, 0] and ids[-1].tolist() == [0, 2, 3]


def test_step_table_is_flow_form_and_regions_land_in_their_masks(renderer):
    scene = flux_scene(64, 64, [region("x", WHOLE)])
    table = renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas)
    assert table.noise[0] == 1.0 and (table.signal[-1], table.noise[-1]) == (1.0, 0.0) and not table.stochastic
    for a, s, level in zip(table.signal, table.noise, table.mask_levels):
        assert a + s == pytest.approx(1.0) and level == pytest.approx(s / (1 + s * s) ** 0.5)
    check_oracle_placement(table, channels=16)


@pytest.mark.parametrize("path", scene_files("flux"), ids=lambda p: p.name)
def test_example_scene_renders_with_tiny_model(path, tmp_path):
    image = render_scene_file(path, tmp_path)
    assert image.shape[:2] == (1024, 1024) and image.std() > 1.0


def test_scene_defaults_are_schnell():
    scene = scene_from_dict({"canvas": {"width": 1024, "height": 768}, "model": {"family": "flux"},
                             "regions": [{"prompt": "a fox", "mask": {"rect": [0, 0, 64, 64]}}]}, None)
    assert scene.model.checkpoint == "black-forest-labs/FLUX.1-schnell" and scene.model.accelerator.lora is None
    assert (scene.sampler.steps, scene.sampler.guidance, scene.sampler.tile.size) == ((0, 1, 2, 3), 0.0, 1024)


def test_canvas_not_a_multiple_of_16_is_refused(renderer):
    data = {"canvas": {"width": 1000, "height": 768}, "model": {"family": "flux"},
            "regions": [{"prompt": "a fox", "mask": {"rect": [0, 0, 64, 64]}}]}
    with pytest.raises(SceneError, match="1000 is not a multiple of 16, which the flux family needs"):
        scene_from_dict(data, None)
    scene = flux_scene(120, 96, [region("x", WHOLE)], tile=Tile(120, 64))  # built past the schema
    with pytest.raises(RenderError, match="multiples of 16 px"):
        renderer.render(scene)


@pytest.mark.parametrize("family", ["sd3", "sdxl"])
def test_checkpoint_of_another_family_is_refused(family):
    folder = presets.ensure_preset(family, "tiny")
    with pytest.raises(RenderError, match=f"is a checkpoint of the {family} family.*set model.family: {family}"):
        flux.load_pipeline(Model("flux", str(folder), Accelerator("none")), torch.float32)


@pytest.mark.parametrize("component, words", [("text_encoder_2", "drop_t5: true"), ("text_encoder", "CLIP text encoder")])
def test_missing_text_encoder_says_what_to_do(tmp_path, component, words):
    folder = tmp_path / "partial"
    shutil.copytree(presets.ensure_preset("flux", "tiny"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    index[component] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(RenderError, match=f"has no {component}(?s:.*){words}"):
        flux.load_pipeline(Model("flux", str(folder), Accelerator("none")), torch.float32)
    if component == "text_encoder_2":
        assert flux.load_pipeline(Model("flux", str(folder), Accelerator("none"), drop_t5=True), torch.float32)


def test_custom_lora_is_fused_and_a_foreign_one_refused(tmp_path):
    from diffusers import FluxPipeline

    pipe = pipeline()
    original = pipe.transformer.state_dict()["transformer_blocks.0.attn.to_q.weight"].clone()
    presets.save_random_lora(pipe.transformer, tmp_path / "lora", FluxPipeline, "transformer",
                             (*presets.ATTENTION_PROJECTIONS, "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"))
    fused = flux.load_pipeline(Model("flux", "tiny", Accelerator("lora", str(tmp_path / "lora"))), torch.float32)
    assert (fused.transformer.state_dict()["transformer_blocks.0.attn.to_q.weight"] - original).abs().max() > 1e-3
    lcm = presets.ensure_preset("sd15", "tiny") / "accelerators" / "lcm"
    with pytest.raises(RenderError, match="does not fit a flux model"):
        flux.load_pipeline(Model("flux", "tiny", Accelerator("lora", str(lcm))), torch.float32)


def test_a_full_canvas_region_with_a_lora_equals_the_pipeline_with_it_loaded(renderer, tmp_path):
    from lora_files import make_lora
    from semanticdraw_cli.scene.loras import file_digest
    from semanticdraw_cli.scene.types import RegionLora

    lora = make_lora("flux", tmp_path / "style.safetensors", scale=0.2)
    apple = region("a red apple", WHOLE, loras=(RegionLora(str(lora), 0.6, None, file_digest(lora)),))
    scene = flux_scene(128, 96, [apple])
    ours = renderer.render(scene)[0].latent
    pipe = pipeline()
    pipe.load_lora_weights(str(lora), adapter_name="region")
    pipe.set_adapters(["region"], [0.6])
    theirs = pipe("a red apple", height=96, width=128, num_inference_steps=4, guidance_scale=0.0, output_type="latent",
                  max_sequence_length=flux.T5_TOKENS, generator=torch.Generator("cpu").manual_seed(scene.sampler.seed),
                  ).images
    torch.testing.assert_close(ours, unpacked(theirs, 96, 128), atol=1e-4, rtol=1e-4)
