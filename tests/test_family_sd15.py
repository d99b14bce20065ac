"""SD1.5 adapter on the tiny preset: the scheduler comes from the scene's resolved model, not a name."""

import dataclasses
import json
import shutil

import pytest
import torch

from semanticdraw_cli.families import presets
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.loader import load_scene
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Model
from family_checks import ddim_pipeline_latent
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow

SCENE = "canvas: {width: 64, height: 64}\nregions:\n  - {prompt: a fox, mask: {rect: [0, 0, 32, 64]}}\n"


def test_both_spellings_of_the_lcm_lora_give_the_same_step_table(tmp_path):
    """`accelerator: lcm` and the same LoRA given as a path with `scheduler: lcm` sample alike; without
    `scheduler` that path samples with the checkpoint's own DDIM."""
    lora = presets.ensure_preset("sd15", "tiny") / "accelerators" / "lcm"
    path = tmp_path / "scene.yaml"
    path.write_text(SCENE)
    spellings = ["model.accelerator=lcm", f"model.accelerator={{lora: {lora}, scheduler: lcm}}",
                 f"model.accelerator={{lora: {lora}}}"]
    named, given, unnamed = (load_scene(path, ["model.checkpoint=tiny", s]) for s in spellings)
    assert named.sampler == given.sampler
    renderer = Renderer(device="cpu", dtype="float32")
    tables = [renderer.adapter(scene)[0].step_table(scene.sampler, scene.canvas) for scene in (named, given, unnamed)]
    assert tables[0] == tables[1]
    assert tables[0].stochastic and tables[0].timesteps == (999, 919, 759, 499, 259)
    assert not tables[2].stochastic and tables[2].timesteps != tables[0].timesteps  # DDIM's own grid


def test_a_v_prediction_checkpoint_samples_as_the_pipeline(tmp_path):
    """The UNet's prediction_type comes from the checkpoint's scheduler config: an SD1.5-layout checkpoint
    that predicts v (as SD 2.x do) renders with x0 = a·x − s·v, as diffusers' pipeline does, not with the
    epsilon formula."""
    folder = tmp_path / "v-checkpoint"
    shutil.copytree(presets.ensure_preset("sd15", "tiny"), folder, ignore=shutil.ignore_patterns("accelerators"))
    config_file = folder / "scheduler" / "scheduler_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "prediction_type": "v_prediction"}))
    scene = make_scene(128, 96, [region("a red apple", rect(0, 0, 1, 1, fractional=True))], steps=tuple(range(4)),
                       grid=4, guidance=7.5, bootstrap=Bootstrap(0, 1.0, 0.2))
    scene = dataclasses.replace(scene, model=Model("sd15", str(folder), Accelerator("none")))
    ours = Renderer(device="cpu", dtype="float32").render(scene)[0].latent
    theirs = ddim_pipeline_latent(folder, "a red apple", 128, 96, 4, 7.5, scene.sampler.seed)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_a_full_canvas_region_with_a_lora_samples_as_the_pipeline_with_it_loaded(tmp_path):
    """A region's LoRA (a PEFT adapter on the UNet, at its weight) is what diffusers' pipeline does with it loaded."""
    from lora_files import make_lora
    from semanticdraw_cli.scene.loras import file_digest
    from semanticdraw_cli.scene.types import RegionLora

    lora = make_lora("sd15", tmp_path / "style.safetensors", scale=0.2)
    scene = make_scene(128, 96, [region("a red apple", rect(0, 0, 1, 1, fractional=True),
                                        loras=(RegionLora(str(lora), 0.8, None, file_digest(lora)),))],
                       steps=tuple(range(4)), grid=4, guidance=7.5, bootstrap=Bootstrap(0, 1.0, 0.2))
    scene = dataclasses.replace(scene, model=Model("sd15", "tiny", Accelerator("none")))
    ours = Renderer(device="cpu", dtype="float32").render(scene)[0].latent
    theirs = ddim_pipeline_latent(presets.ensure_preset("sd15", "tiny"), "a red apple", 128, 96, 4, 7.5,
                                  scene.sampler.seed, lora=lora, lora_weight=0.8)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
