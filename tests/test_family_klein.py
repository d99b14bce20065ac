"""FLUX.2 [klein] adapter on the tiny preset: parity with Flux2KleinPipeline (step-distilled and base),
the codec's latent space, region placement, the example scene, clear errors."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from semanticdraw_cli.errors import RenderError, SceneError
from semanticdraw_cli.families import klein, presets, registry
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Model, Tile
from semanticdraw_cli.scene.loader import scene_from_dict
from family_checks import check_oracle_placement, render_scene_file, scene_files
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow
KLEIN = registry.accelerators()["klein"]
KLEIN_TILE = registry.family("klein").tile_size
WHOLE = rect(0, 0, 1, 1, fractional=True)


def klein_scene(side, checkpoint="tiny", accelerator=Accelerator("klein"), guidance=KLEIN.guidance, tile=None,
                **options):
    """A square canvas, by default its own tile: one window, the whole picture, as the pipeline sees it."""
    scene = make_scene(side, side, [region("a red apple", WHOLE)], steps=tuple(range(KLEIN.grid)), grid=KLEIN.grid,
                       guidance=guidance, bootstrap=Bootstrap(0, 1.0, 0.2), tile=tile or Tile(side, side // 2))
    return dataclasses.replace(scene, model=Model("klein", checkpoint, accelerator, **options))


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    """The tiny preset as a klein *base* checkpoint ships: not step-distilled, classifier-free guidance."""
    folder = tmp_path_factory.mktemp("klein") / "base"
    shutil.copytree(presets.ensure_preset("klein", "tiny"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "is_distilled": False}))
    return folder


def pipeline_latent(adapter, folder, side, seed, guidance, tokens=klein.TEXT_TOKENS, lora=None, lora_weight=1.0):
    """Flux2KleinPipeline's clean latent, in our (normalised, patchified) space; with `lora` loaded at `lora_weight`."""
    from diffusers import Flux2KleinPipeline

    pipe = Flux2KleinPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora), adapter_name="region")
        pipe.set_adapters(["region"], [lora_weight])
    latent = pipe(prompt="a red apple", height=side, width=side, num_inference_steps=4, guidance_scale=guidance,
                  max_sequence_length=tokens, output_type="latent", generator=torch.Generator("cpu").manual_seed(seed),
                  ).images
    mean, std = adapter.codec._stats()
    return ((klein.patchify(latent) - mean) / std)[0], pipe.scheduler.timesteps


@pytest.mark.parametrize("guidance, text_tokens", [(1.0, None), (4.0, 64)])
def test_distilled_single_region_equals_pipeline_and_ignores_guidance(renderer, guidance, text_tokens):
    scene = klein_scene(128, guidance=guidance, text_tokens=text_tokens)
    result = renderer.render(scene)[0]
    adapter = renderer.adapter(scene)[0]
    assert not adapter.cfg_guidance and result.report["batch_items"] == 4  # no unconditional branch
    theirs, timesteps = pipeline_latent(adapter, presets.ensure_preset("klein", "tiny"), 128, scene.sampler.seed,
                                        guidance, text_tokens or klein.TEXT_TOKENS)
    assert adapter.step_table(scene.sampler, scene.canvas).timesteps == tuple(float(t) for t in timesteps)
    assert result.latent.shape == (128, 8, 8)
    torch.testing.assert_close(result.latent, theirs, atol=1e-4, rtol=1e-4)


def test_a_canvas_smaller_than_the_tile_is_shifted_for_its_own_size(renderer):
    """The empirical mu follows the window the model sees (here the 128 px canvas), not the 1024 px tile."""
    scene = klein_scene(128, tile=Tile(KLEIN_TILE, KLEIN_TILE // 2))
    result = renderer.render(scene)[0]
    adapter = renderer.adapter(scene)[0]
    theirs, timesteps = pipeline_latent(adapter, presets.ensure_preset("klein", "tiny"), 128, scene.sampler.seed,
                                        KLEIN.guidance)
    assert adapter.step_table(scene.sampler, scene.canvas).timesteps == tuple(float(t) for t in timesteps)
    torch.testing.assert_close(result.latent, theirs, atol=1e-4, rtol=1e-4)


def test_base_checkpoint_takes_classifier_free_guidance(renderer, base_folder):
    scene = klein_scene(128, str(base_folder), Accelerator("none"), guidance=4.0)
    result = renderer.render(scene)[0]
    adapter = renderer.adapter(scene)[0]
    assert adapter.cfg_guidance and result.report["batch_items"] == 8
    theirs, _ = pipeline_latent(adapter, base_folder, 128, scene.sampler.seed, 4.0)
    torch.testing.assert_close(result.latent, theirs, atol=1e-4, rtol=1e-4)


def test_codec_is_the_normalised_patchified_latent(renderer):
    adapter = renderer.adapter(klein_scene(64))[0]
    assert adapter.latent_factor == 16 and adapter.latent_channels == 128
    z = torch.randn(1, 32, 6, 8)
    assert torch.equal(klein.unpatchify(klein.patchify(z)), z)
    picture = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    latent = adapter.encode_image(picture)
    assert latent.shape == (1, 128, 6, 8) and adapter.white_latent().shape == (1, 128, 1, 1)
    assert adapter.decode(latent).shape == (1, 96, 128, 3)
    image_ids, text_ids = klein.position_ids(2, 3, 5, torch.device("cpu"))
    assert image_ids[-1].tolist() == [0, 1, 2, 0] and text_ids[-1].tolist() == [0, 0, 0, 4]


def test_regions_land_in_their_masks(renderer):
    scene = klein_scene(64)
    check_oracle_placement(renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas), channels=128)


@pytest.mark.parametrize("path", scene_files("klein"), ids=lambda p: p.name)
def test_example_scene_renders_with_tiny_model(path, tmp_path):
    image = render_scene_file(path, tmp_path)
    assert image.shape[:2] == (1024, 1024) and image.std() > 1.0


def test_canvas_not_a_multiple_of_16_is_refused():
    data = {"canvas": {"width": 1024, "height": 760}, "model": {"family": "klein"},
            "regions": [{"prompt": "a fox", "mask": {"rect": [0, 0, 64, 64]}}]}
    with pytest.raises(SceneError, match="760 is not a multiple of 16, which the klein family needs"):
        scene_from_dict(data, None)


def test_checkpoint_of_another_family_is_refused():
    folder = presets.ensure_preset("flux", "tiny")
    with pytest.raises(RenderError, match="is a checkpoint of the flux family.*set model.family: flux"):
        klein.load_pipeline(Model("klein", str(folder), Accelerator("none")), torch.float32)


def test_missing_text_encoder_says_what_to_do(tmp_path):
    folder = tmp_path / "partial"
    shutil.copytree(presets.ensure_preset("klein", "tiny"), folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(RenderError, match="has no text_encoder(?s:.*)needs its Qwen3 text encoder"):
        klein.load_pipeline(Model("klein", str(folder), Accelerator("none")), torch.float32)


def test_a_full_canvas_region_with_a_lora_equals_the_pipeline_with_it_loaded(renderer, tmp_path):
    from lora_files import make_lora
    from semanticdraw_cli.scene.loras import file_digest
    from semanticdraw_cli.scene.types import RegionLora

    lora = make_lora("klein", tmp_path / "style.safetensors", scale=0.2)
    scene = klein_scene(128)
    apple = dataclasses.replace(scene.regions[0], loras=(RegionLora(str(lora), 0.6, None, file_digest(lora)),))
    result = renderer.render(dataclasses.replace(scene, regions=(apple,)))[0]
    theirs, _ = pipeline_latent(renderer.adapter(scene)[0], presets.ensure_preset("klein", "tiny"), 128,
                                scene.sampler.seed, scene.sampler.guidance, lora=lora, lora_weight=0.6)
    torch.testing.assert_close(result.latent, theirs, atol=1e-4, rtol=1e-4)
