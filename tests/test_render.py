"""The staged renderer: prepare -> steps -> finish equals render, and re-preparing recomputes only what changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.loader import load_scene

pytestmark = pytest.mark.slow

SCENE = """\
canvas: {width: 64, height: 64}
model: {checkpoint: tiny}
sampler: {steps: [0, 25], seed: 3}
background: {prompt: a blue sky}
regions:
  - {name: fox, prompt: a red fox, mask: fox.png}
  - {name: tree, prompt: a tall tree, mask: {rect: [32, 0, 32, 64]}}
"""


def write_mask(folder, right: int) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[8:56, 4:right] = 255
    Image.fromarray(mask).save(folder / "fox.png")


@pytest.fixture()
def scene_file(tmp_path):
    write_mask(tmp_path, 30)
    path = tmp_path / "scene.yaml"
    path.write_text(SCENE)
    return path


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


def run(renderer, prepared):
    states = list(renderer.steps(prepared))
    return states, renderer.finish(prepared, states[-1], states)


def test_stages_equal_render_and_steps_can_run_again(renderer, scene_file):
    scene = load_scene(scene_file)
    prepared = renderer.prepare(scene)
    states, results = run(renderer, prepared)
    again, _ = run(renderer, prepared)
    whole = renderer.render(scene)[0]
    assert [s.stats.step for s in states] == [0, 1]
    assert torch.equal(states[-1].x, again[-1].x) and torch.equal(results[0].latent, whole.latent)
    assert np.array_equal(results[0].image, whole.image)
    # each state carries its own step's canvas and fused x0: step 0's canvas is re-noised away from its x0,
    # and the last step's x0 (the finished latent) moved on from step 0's estimate
    assert (states[0].x - states[0].x0).abs().mean() > 0.1
    assert not torch.equal(states[0].x0, states[-1].x0) and torch.equal(results[0].latent, states[-1].x0[0])


def test_editing_one_prompt_re_encodes_only_that_prompt(renderer, scene_file):
    renderer.prepare(load_scene(scene_file))
    scene_file.write_text(SCENE.replace("a tall tree", "a short tree"))
    prepared = renderer.prepare(load_scene(scene_file))
    assert prepared.recomputed == {"text": 1}


def test_editing_one_mask_file_re_rasterizes_only_that_mask(renderer, scene_file):
    renderer.prepare(load_scene(scene_file))
    write_mask(scene_file.parent, 20)
    prepared = renderer.prepare(load_scene(scene_file))
    assert prepared.recomputed.get("mask") == 1 and "text" not in prepared.recomputed
    assert set(prepared.recomputed) <= {"mask", "plan"}


def test_abandoning_between_steps_leaves_the_next_render_unchanged(renderer, scene_file):
    scene = load_scene(scene_file)
    prepared = renderer.prepare(scene)
    next(iter(renderer.steps(prepared)))  # one step, then abandoned
    states, _ = run(renderer, prepared)
    assert torch.equal(states[-1].x[0], renderer.render(scene)[0].latent)


def test_offload_without_a_gpu_says_to_remove_it(renderer, scene_file):
    from semanticdraw_cli.errors import RenderError

    scene = load_scene(scene_file, ["model.offload=model"])
    with pytest.raises(RenderError, match="(?s)model.offload: model moves weights .* CUDA GPU.*remove model.offload"):
        renderer.prepare(scene)
