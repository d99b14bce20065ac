"""The staged renderer: prepare -> steps -> finish equals render, and re-preparing recomputes only what changed."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

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


def test_a_preview_decoder_changes_no_pixel_and_loads_nothing_again(renderer, scene_file):
    """`model.preview_decoder` is for watch's step previews: an image decodes with the full VAE either way, and the
    model (with every cached stage) is the one already loaded."""
    plain = renderer.render(load_scene(scene_file))[0]
    previewed_scene = load_scene(scene_file, ["model.preview_decoder=tiny-ae"])
    prepared = renderer.prepare(previewed_scene)
    _, results = run(renderer, prepared)
    assert prepared.recomputed == {} and prepared.timings["load"] == 0.0
    assert np.array_equal(results[0].image, plain.image) and torch.equal(results[0].latent, plain.latent)
    assert results[0].report["content_key"] == plain.report["content_key"]


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


def test_each_network_call_is_reported_and_changes_nothing(renderer, scene_file):
    """One sampling step of a large canvas can take minutes: each call reports the windows of its step done."""
    import dataclasses

    scene = load_scene(scene_file)
    scene = dataclasses.replace(scene, sampler=dataclasses.replace(scene.sampler, max_batch=1))
    prepared = renderer.prepare(scene, seeds=[3, 4])
    calls = []
    counted = list(renderer.steps(prepared, on_call=lambda *call: calls.append(call)))
    plain = list(renderer.steps(prepared))
    assert torch.equal(counted[-1].x, plain[-1].x)
    windows = [len(pairs) * 2 for pairs in prepared.setup.plan]
    assert len(calls) == sum(windows) == sum(state.stats.network_calls for state in counted)  # one window a call
    for step, total in enumerate(windows):
        assert [call for call in calls if call[0] == step] == [(step, done, total) for done in range(1, total + 1)]


def test_the_readme_python_example_runs_offline_as_written(tmp_path, monkeypatch, capsys):
    """The README's Python block, run from a copy of the repository's scenes: two 512 px renders of the tiny model."""
    root = Path(__file__).resolve().parents[1]
    blocks = re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(), re.S)
    assert len(blocks) == 1
    shutil.copytree(root / "scenes", tmp_path / "scenes")
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "['out/two-subjects-7.png', 'out/two-subjects-3.png']"
    assert (tmp_path / "out" / "two-subjects-7.json").is_file() and (tmp_path / "out" / "two-subjects-3.png").is_file()


def test_a_region_smaller_than_the_latent_grid_is_skipped_with_a_warning(renderer, tmp_path):
    path = tmp_path / "dot.yaml"  # the only region lies between the 8×8 blocks' centres: no pair at any step
    path.write_text("canvas: {width: 64, height: 64}\nmodel: {checkpoint: tiny}\nsampler: {steps: [0, 25]}\n"
                    "regions:\n  - {name: dot, prompt: a dot, mask: {rect: [14, 14, 4, 4]}}\n")
    result = renderer.render(load_scene(path))[0]
    assert result.report["warnings"] == [
        "regions[0] (dot): no latent pixel at any step (the region is smaller than the 8-pixel latent grid), "
        "so the sampler skips it and it paints nothing"]
    assert result.report["network_calls"] == 0 and result.image.shape == (64, 64, 3)


WRAPPED = """\
canvas: {{width: 128, height: 64, wrap: both}}
model: {{checkpoint: tiny, accelerator: none}}
sampler: {{steps: 2, guidance: 1, seed: 4, bootstrap: {{steps: 0}}, tile: {{size: 64, stride: 32}}}}
background: {{prompt: a blue sky}}
regions:
  - {{prompt: a red fox, mask: {{rect: [{x}, {y}, 48, 40]}}, blur: 0}}
"""


def wrapped_scene(tmp_path, x: int, y: int):
    path = tmp_path / f"wrapped-{x}-{y}.yaml"
    path.write_text(WRAPPED.format(x=x, y=y))
    return load_scene(path)


def test_a_wrapped_render_is_roll_equivariant_and_tiles_without_a_seam(renderer, tmp_path):
    """On tiny with a deterministic sampler: rolling the masks and the initial noise by whole strides (4
    latent px down, 8 right) rolls the final latent (4.8e-7 at most, measured); the picture's wrap seams
    differ no more than the median pair of neighbouring interior rows (columns) does (measured: 17.2
    against 20.3 for rows, 15.7 against 19.9 for columns, mean levels per pixel)."""
    prepared = renderer.prepare(wrapped_scene(tmp_path, 100, 40))  # the fox crosses both edges
    shifted = renderer.prepare(wrapped_scene(tmp_path, 100 + 64, 40 + 32))
    shifted = dataclasses.replace(shifted, x=torch.roll(prepared.x, (4, 8), dims=(-2, -1)))
    (_, (result,)), (_, (moved,)) = run(renderer, prepared), run(renderer, shifted)
    torch.testing.assert_close(moved.latent, torch.roll(result.latent, (4, 8), dims=(-2, -1)), atol=1e-6, rtol=0)
    image = result.image.astype(int)
    for axis in (0, 1):
        steps = np.abs(np.diff(image, axis=axis)).mean(axis=(1 - axis, 2))  # neighbour differences per line pair
        seam = np.abs(image.take(0, axis=axis) - image.take(-1, axis=axis)).mean()
        assert seam <= np.median(steps), (axis, seam, np.median(steps))
