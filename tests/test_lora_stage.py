"""The prepare stage of region LoRAs (`lora_stage.py`), through the renderer on sd15's tiny preset: pairs of
regions without a LoRA are the render without any LoRA, bit for bit; weight 0 is no LoRA; an edited LoRA
file loads again, alone; the report records each region's LoRAs with their hashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lora_files import make_lora
from semanticdraw_cli.fusion import sample
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.loader import load_scene

pytestmark = pytest.mark.slow

SCENE = """\
canvas: {width: 128, height: 64}
model: {checkpoint: tiny}
sampler: {steps: [0, 25], seed: 3, max_batch: 1, tile: {size: 64, stride: 64}}
background: {prompt: a blue sky}
regions:
  - {name: fox, prompt: a red fox, mask: {rect: [0, 0, 64, 64]}, loras: LORAS}
  - {name: tree, prompt: a tall tree, mask: {rect: [64, 0, 64, 64]}}
"""


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory) -> Path:
    return make_lora("sd15", tmp_path_factory.mktemp("lora") / "fox.safetensors", scale=0.2)


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


def scene_at(folder: Path, lora_file: Path, loras: str):
    if not (folder / "fox.safetensors").exists():
        shutil.copy(lora_file, folder / "fox.safetensors")
    (folder / "scene.yaml").write_text(SCENE.replace("LORAS", loras))
    return load_scene(folder / "scene.yaml")


class Recorder:
    """The adapter as the sampler sees it, keeping each call's variant, windows and x0 at the first step."""

    def __init__(self, adapter):
        self.adapter, self.calls = adapter, []

    def predict_x0(self, x, table, step, items):
        x0 = self.adapter.predict_x0(x, table, step, items)
        if step == 0:
            self.calls.append((items.variant, [(w.top, w.left) for w in items.windows], x0.clone()))
        return x0


def first_step_calls(renderer, scene):
    prepared = renderer.prepare(scene)
    recorder = Recorder(prepared.adapter)
    generators = [torch.Generator("cpu").set_state(state) for state in prepared.generator_states]
    next(sample(recorder, prepared.setup, prepared.x, generators))
    return prepared, recorder.calls


def test_pairs_without_a_lora_are_the_render_without_any_bit_for_bit(renderer, lora_file, tmp_path):
    _, plain = first_step_calls(renderer, scene_at(tmp_path, lora_file, "[]"))
    prepared, with_lora = first_step_calls(renderer, scene_at(tmp_path, lora_file, "[{lora: fox.safetensors}]"))
    assert prepared.setup.variants[0] is None and prepared.setup.variants[2] is None  # background, tree
    assert prepared.setup.variants[1] is not None  # fox
    base = [call for call in with_lora if call[0] is None]
    lora = [call for call in with_lora if call[0] is not None]
    assert base and lora and len(plain) == len(with_lora)
    for variant, windows, x0 in base:
        match = [p for p in plain if p[1] == windows and torch.equal(p[2], x0)]
        assert match, f"no call of the render without LoRAs gives the same x0 at {windows}"
    assert all(not any(torch.equal(p[2], x0) for p in plain) for _, _, x0 in lora)


def test_weight_zero_renders_as_no_lora(renderer, lora_file, tmp_path):
    plain = renderer.prepare(scene_at(tmp_path, lora_file, "[]"))
    zero = renderer.prepare(scene_at(tmp_path, lora_file, "[{lora: fox.safetensors, weight: 0}]"))
    assert zero.setup.variants == () and zero.speed["loras"][0]["weight"] == 0.0
    assert torch.equal(list(renderer.steps(plain))[-1].x, list(renderer.steps(zero))[-1].x)


def test_an_edited_lora_loads_again_alone_and_the_report_records_its_hash(renderer, lora_file, tmp_path):
    scene = scene_at(tmp_path, lora_file, "[{lora: fox.safetensors, weight: 0.9}]")
    first = renderer.prepare(scene)
    assert first.speed["loras"] == [{"region": "fox", "lora": str(tmp_path / "fox.safetensors"), "weight": 0.9,
                                     "weight_name": None, "sha256": scene.regions[0].loras[0].sha256}]
    reweighted = renderer.prepare(scene_at(tmp_path, lora_file, "[{lora: fox.safetensors, weight: 0.5}]"))
    assert "lora" not in reweighted.recomputed  # another weight is another variant of the loaded adapter
    assert reweighted.setup.variants[1] == ((first.setup.variants[1][0][0], 0.5),)
    make_lora("sd15", tmp_path / "fox.safetensors", seed=5, scale=0.2)
    edited = renderer.prepare(load_scene(tmp_path / "scene.yaml"))
    assert edited.recomputed == {"lora": 1}  # the LoRA alone: no mask, text or plan (as `watch` re-prepares)
    assert len(edited.adapter.network.peft_config) == 1  # the old file's adapter was deleted
    assert edited.setup.variants[1] != first.setup.variants[1]


def test_a_region_with_a_lora_and_a_reference_picture_gets_both_whichever_loaded_first(lora_file, tmp_path):
    """Both alter the network: the LoRA as PEFT layers inside the attention projections, the IP-Adapter as the
    cross-attention processors that call them. The fox with both differs from the fox with either alone; the
    picture is the same when the LoRA was loaded by an earlier render (as `watch` re-prepares) and when the
    adapter loads first within one prepare."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "look.png")
    reference = ", reference: {image: look.png, adapter: tiny}"  # after the fox's loras, in its mapping
    lora = "[{lora: fox.safetensors}]"

    def fox(renderer, loras: str, picture: str = ""):
        return renderer.render(scene_at(tmp_path, lora_file, loras + picture))[0].image[:, :64].astype(int)

    earlier = Renderer(device="cpu", dtype="float32")
    only_lora = fox(earlier, lora)
    both = fox(earlier, lora, reference)
    only_reference = fox(earlier, "[]", reference)
    assert np.abs(both - only_lora).max() > 8 and np.abs(both - only_reference).max() > 8
    assert np.array_equal(fox(Renderer(device="cpu", dtype="float32"), lora, reference), both)
