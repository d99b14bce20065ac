"""SD 2.x on its tiny preset (v-prediction): parity with diffusers' pipeline, a pipeline class shared with sd15,
a family with no named accelerator, region placement."""

import dataclasses

import pytest
import torch

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import loading, presets, registry, schedules
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.loader import load_scene
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Model, Tile
from family_checks import check_oracle_placement, ddim_pipeline_latent
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


def sd2_scene(**sampler):
    scene = make_scene(128, 96, [region("a red apple", rect(0, 0, 1, 1, fractional=True))],
                       bootstrap=Bootstrap(0, 1.0, 0.2), tile=Tile(768, 384), **sampler)
    return dataclasses.replace(scene, model=Model("sd2", "tiny", Accelerator("none")))


@pytest.mark.parametrize("guidance", [1.0, 7.5])
def test_single_region_equals_diffusers_pipeline_with_v_prediction(renderer, guidance):
    """DDIM over 4 steps of a v-prediction model: the x0 conversion is a·x − s·v, not the epsilon formula."""
    scene = sd2_scene(steps=tuple(range(4)), grid=4, guidance=guidance)
    adapter = renderer.adapter(scene)[0]
    assert adapter.parameterization == "v_prediction"
    ours = renderer.render(scene)[0].latent
    theirs = ddim_pipeline_latent(presets.ensure_preset("sd2", "tiny"), "a red apple", 128, 96, 4, guidance,
                                  scene.sampler.seed)
    assert ours.shape == theirs.shape == (4, 12, 16)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_a_full_canvas_region_with_a_lora_equals_the_pipeline_with_it_loaded(renderer, tmp_path):
    from lora_files import make_lora
    from semanticdraw_cli.scene.loras import file_digest
    from semanticdraw_cli.scene.types import RegionLora

    lora = make_lora("sd2", tmp_path / "style.safetensors", scale=0.2)
    scene = sd2_scene(steps=tuple(range(4)), grid=4, guidance=7.5)
    with_lora = dataclasses.replace(scene.regions[0], loras=(RegionLora(str(lora), 0.6, None, file_digest(lora)),))
    ours = renderer.render(dataclasses.replace(scene, regions=(with_lora,)))[0].latent
    theirs = ddim_pipeline_latent(presets.ensure_preset("sd2", "tiny"), "a red apple", 128, 96, 4, 7.5,
                                  scene.sampler.seed, lora=lora, lora_weight=0.6)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_a_family_without_a_named_accelerator_validates_with_its_own_scheduler(tmp_path):
    path = tmp_path / "scene.yaml"
    path.write_text("canvas: {width: 64, height: 64}\nmodel: {family: sd2}\n"
                    "regions:\n  - {prompt: a fox, mask: {rect: [0, 0, 32, 64]}}\n")
    scene = load_scene(path)
    spec = registry.family("sd2")
    assert scene.model.accelerator == Accelerator("none") and scene.model.checkpoint == spec.checkpoint
    assert (scene.sampler.steps, scene.sampler.grid) == (tuple(range(25)), 25) and scene.sampler.guidance == 7.5


def test_sd15_and_sd2_share_a_pipeline_class_and_other_families_are_refused():
    folder = presets.ensure_preset("sd2", "tiny")
    assert registry.families_of_pipeline({"_class_name": "StableDiffusionPipeline"}) == ("sd15", "sd2")
    for family in ("sd15", "sd2"):
        assert loading.refuse_other_family(str(folder), family)["_class_name"] == "StableDiffusionPipeline"
    with pytest.raises(RenderError, match=r"checkpoint of the sd15 family \(or sd2\), but model.family is sdxl"):
        loading.refuse_other_family(str(folder), "sdxl")


def test_regions_land_where_their_masks_are_with_the_sd2_schedule(renderer):
    """On SD 2.1's noise schedule in the Euler-trailing form (4 steps, ending at s = 0): DDIM with
    set_alpha_to_one false ends at s ≈ 0.03, where the canvas is not yet the fused x0 the check compares."""
    scene = sd2_scene(steps=tuple(range(4)), grid=4, guidance=7.5)
    adapter = renderer.adapter(scene)[0]
    check_oracle_placement(schedules.discrete_step_table("euler-trailing", adapter.scheduler_config, scene.sampler))
