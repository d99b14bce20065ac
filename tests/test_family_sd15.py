"""SD1.5 adapter on the tiny preset: the scheduler comes from the scene's resolved model, not a name."""

import pytest

from semanticdraw_cli.families import presets
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.loader import load_scene

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
