"""Speed levers on the tiny preset (CPU): the same picture with auto batches, compiled, fused; FLOPs and the report."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from semanticdraw_cli import defaults, flops, speed
from semanticdraw_cli.families.network import CompiledNetwork, Levers
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Tile
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow


def scene(**sampler):
    """Three regions, each on all three 24×24-latent windows: 9 pairs a step, more than the CPU's batch of 8."""
    regions = [region("a blue sky", rect(0, 0, 1, 1, fractional=True)),
               region("a red barn", rect(16, 64, 300, 64)),
               region("a green tree", rect(100, 100, 270, 80))]
    return make_scene(384, 192, regions, tile=Tile(192, 96), **sampler)


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32", peak_tflops=1.0)


def render(renderer, **sampler):
    return renderer.render(scene(**sampler))[0]


def test_auto_batch_is_batch_8_on_cpu(renderer):
    auto, eight = render(renderer), render(renderer, max_batch=8)
    assert torch.equal(auto.latent, eight.latent)
    assert auto.report["network"]["max_batch"] == "auto" and auto.report["network"]["batch"] == 8
    assert auto.report["pairs_active"] == 9 * len(auto.report["steps"])
    assert auto.report["network_calls"] == eight.report["network_calls"] == 2 * len(auto.report["steps"])  # 8 + 1 a step


def test_all_pairs_of_a_step_in_one_call_give_the_same_picture(renderer):
    one_call, eight = render(renderer, max_batch=64), render(renderer, max_batch=8)
    assert one_call.report["network_calls"] == len(one_call.report["steps"])  # one call per step
    torch.testing.assert_close(one_call.latent, eight.latent, atol=1e-4, rtol=1e-4)


def test_running_out_of_memory_is_survived_and_reported(renderer, monkeypatch):
    expected = render(renderer, max_batch=2)
    adapter, _ = renderer.adapter(scene())
    predict = adapter.predict_x0

    def small_memory(x, *args):
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (a test)")
        return predict(x, *args)

    monkeypatch.setattr(adapter, "predict_x0", small_memory)
    result = render(renderer)
    assert result.report["oom_halvings"] == 2  # 8 -> 4 -> 2 in the first step, then kept
    assert torch.equal(result.latent, expected.latent)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_network_gives_the_eager_picture(renderer, monkeypatch, backend):
    """aot_eager traces the network as inductor does but runs eager kernels (seconds); inductor builds C++
    kernels with gcc (minutes on a cold cache)."""
    monkeypatch.setattr(defaults, "COMPILE_BACKEND", backend)
    eager = render(renderer)
    compiled = render(renderer, compile=True)
    adapter, _ = renderer.adapter(scene())
    assert isinstance(adapter.unet, CompiledNetwork) and adapter.levers.compile == "default"
    torch.testing.assert_close(compiled.latent, eager.latent, atol=1e-4, rtol=1e-4)
    report = compiled.report
    assert report["network"]["compile"] == "default" and report["seconds"]["compile"] > 0
    assert report["padded_items"] > 0 and report["batch_items"] + report["padded_items"] == 8 * report["network_calls"]
    again = render(renderer, compile=True)
    assert again.report["seconds"]["compile"] == 0.0  # compiled once per shape
    assert torch.equal(render(renderer).latent, eager.latent)  # back to eager: the very same picture


@pytest.mark.parametrize("lever", ["fuse_qkv", "channels_last"])
def test_eager_levers_give_the_same_picture_and_undo_exactly(renderer, lever):
    plain = render(renderer)
    changed = render(renderer, **{lever: True})
    assert changed.report["network"][lever] is True
    torch.testing.assert_close(changed.latent, plain.latent, atol=1e-4, rtol=1e-4)
    assert torch.equal(render(renderer).latent, plain.latent)


def test_flops_are_linear_in_the_batch_and_count_attention(renderer):
    prepared = renderer.prepare(scene())
    adapter, setup = prepared.adapter, prepared.setup
    pair = setup.plan[0][0]
    one, three = (flops.count(lambda b=b: speed.call(adapter, setup, pair, b)) for b in (1, 3))
    assert one > 0 and three == 3 * one
    with torch.utils.flop_counter.FlopCounterMode(display=False) as torch_only:  # torch's table misses CPU attention
        speed.call(adapter, setup, pair, 1)
    assert torch_only.get_total_flops() < one


def test_report_gives_achieved_tflops_and_share_of_the_peak(renderer):
    report = render(renderer).report
    measured = report["flops"]
    per_item = measured["per_item"]["24x24"]
    assert measured["denoise"] == per_item * report["batch_items"]  # guidance 1: one network item per pair
    assert measured["tflops_per_second"] == pytest.approx(measured["denoise"] / report["seconds"]["denoise"] / 1e12)
    assert measured["peak"] == "given" and measured["fraction_of_peak"] == pytest.approx(measured["tflops_per_second"])
    assert report["seconds"]["flops"] >= 0 and report["oom_halvings"] == 0


def test_peak_is_measured_once_per_process():
    first = flops.peak(torch.device("cpu"), torch.float32, None)
    assert first[0] > 0 and first[1].startswith("measured: 1024x1024x1024 float32")
    assert flops.peak(torch.device("cpu"), torch.float32, None) == first


def test_levers_follow_the_scene():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    sampler = scene(compile=True, fuse_qkv=True).sampler
    assert speed.levers(sampler, cpu) == Levers("default", True, False)
    assert speed.levers(sampler, cuda).compile == "reduce-overhead"
    assert speed.levers(dataclasses.replace(sampler, compile="max-autotune"), cpu).compile == "max-autotune"
    assert speed.levers(scene().sampler, cuda) == Levers()


def test_compile_option_of_render(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from semanticdraw_cli.cli.app import app

    monkeypatch.setattr(defaults, "COMPILE_BACKEND", "aot_eager")
    path = tmp_path / "scene.yaml"
    path.write_text("canvas: {width: 128, height: 128}\nregions: [{prompt: a fox, mask: {rect: [0, 0, 64, 128]}}]\n")
    args = ["render", str(path), "--model", "tiny", "-o", str(tmp_path), "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, [*args, "--compile", "--peak-tflops", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "scene-2024.json").read_text())
    assert report["network"]["compile"] == "default" and report["seconds"]["compile"] > 0
    assert report["flops"]["peak_tflops_per_second"] == 2.0 and report["flops"]["peak"] == "given"
