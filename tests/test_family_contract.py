"""Every registered family through the one adapter contract, on its `tiny` preset: encode, one step, decode, levers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semanticdraw_cli.families import registry
from semanticdraw_cli.families.base import Conditioning, FamilyAdapter
from semanticdraw_cli.families.network import CompiledNetwork, Levers
from semanticdraw_cli.scene.loader import scene_from_dict
from semanticdraw_cli.tiles import Window

FAMILIES = list(registry.families())


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request):
    family = request.param
    scene = scene_from_dict(
        {"canvas": {"width": 64, "height": 64}, "model": {"family": family, "checkpoint": "tiny"},
         "regions": [{"prompt": "a fox", "mask": {"rect": [0, 0, 32, 64]}}]},
        source=None,
    )
    return scene, registry.load_adapter(scene.model, torch.device("cpu"), torch.float32)


def items(cond, uncond, guidance, windows) -> Conditioning:
    return Conditioning(cond, uncond, torch.tensor(guidance, dtype=torch.float32), windows)


def test_every_family_has_a_tiny_preset_and_distinct_accelerators():
    assert FAMILIES == list(registry.families()) and len(FAMILIES) == len(registry.FAMILY_MODULES)
    for spec in registry.families().values():
        assert "tiny" in spec.presets and spec.accelerator in (*spec.accelerators, "none")
    assert len(registry.accelerators()) == sum(len(spec.accelerators) for spec in registry.families().values())


def test_adapter_implements_the_contract(loaded):
    scene, adapter = loaded
    assert isinstance(adapter, FamilyAdapter)
    assert adapter.device == torch.device("cpu") and adapter.dtype == torch.float32
    assert adapter.latent_factor in (8, 16) and adapter.latent_channels in (4, 16, 128)  # FLUX.2: 2×2 patches of 32


def test_encode_one_step_decode(loaded):
    scene, adapter = loaded
    channels, side = adapter.latent_channels, 64 // adapter.latent_factor
    table = adapter.step_table(scene.sampler, scene.canvas)
    assert len(table.signal) == len(table.noise) == len(table.mask_levels) == table.steps + 1
    assert table.mask_levels[-1] == 0.0 and table.steps == len(scene.sampler.steps)

    texts = adapter.encode_text(["a fox", "a cat"])
    assert texts and all(value.shape[0] == 2 for value in texts.values())

    picture = np.full((64, 64, 3), 200, np.uint8)
    latent = adapter.encode_image(picture)
    assert latent.shape == (1, channels, side, side) and latent.dtype == torch.float32
    assert adapter.white_latent().shape == (1, channels, 1, 1)

    x = torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(0))
    windows = [Window(0, 0, side, side)] * 2
    x0 = adapter.predict_x0(x, table, 0, items(texts, None, [1.0, 1.0], windows))
    assert x0.shape == x.shape and x0.dtype == torch.float32 and torch.isfinite(x0).all()

    images = adapter.decode(x0)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8


def test_guidance_is_per_item_classifier_free_guidance_over_the_right_branches(loaded):
    """Different prompts in the two branches and a different scale per item, against u + g·(c − u) computed by
    hand from unguided calls (x0 is affine in the network's output, so guiding x0 equals guiding the output):
    a swapped batch or one scale for all would land elsewhere."""
    scene, adapter = loaded
    channels, side = adapter.latent_channels, 64 // adapter.latent_factor
    table = adapter.step_table(scene.sampler, scene.canvas)
    cond, uncond = adapter.encode_text(["a fox", "a cat"]), adapter.encode_text(["a red house", ""])
    x = torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(0))
    windows = [Window(0, 0, side, side)] * 2
    scales = [3.0, 1.5]
    x0_cond = adapter.predict_x0(x, table, 0, items(cond, None, scales, windows))
    x0_uncond = adapter.predict_x0(x, table, 0, items(uncond, None, scales, windows))
    assert (x0_cond - x0_uncond).abs().max() > 1e-3, "the two prompts must change the prediction"
    guided = adapter.predict_x0(x, table, 0, items(cond, uncond, scales, windows))
    expected = x0_uncond + torch.tensor(scales)[:, None, None, None] * (x0_cond - x0_uncond)
    torch.testing.assert_close(guided, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_speed_levers_keep_the_prediction_and_undo_exactly(loaded):
    """Every family gets the levers from `network.NetworkMixin`; aot_eager traces the network as inductor does
    (graph breaks, static shapes, the calling convention) without building kernels."""
    scene, adapter = loaded
    channels, side = adapter.latent_channels, 64 // adapter.latent_factor
    table = adapter.step_table(scene.sampler, scene.canvas)
    texts = adapter.encode_text(["a fox", "a cat"])
    x = torch.randn(2, channels, side, side, generator=torch.Generator().manual_seed(0))
    windows = [Window(0, 0, side, side)] * 2
    plain = adapter.predict_x0(x, table, 1, items(texts, texts, [3.0, 3.0], windows))
    every = Levers(compile="default", fuse_qkv=True, channels_last=True, backend="aot_eager")
    for levers in (Levers(fuse_qkv=True), Levers(channels_last=True), every):
        assert adapter.optimize(levers) and isinstance(adapter.network, torch.nn.Module)
        changed = adapter.predict_x0(x, table, 1, items(texts, texts, [3.0, 3.0], windows))
        torch.testing.assert_close(changed, plain, rtol=1e-4, atol=1e-4)
    assert isinstance(getattr(adapter, adapter.network_attribute), CompiledNetwork)
    with adapter.eager():
        assert getattr(adapter, adapter.network_attribute) is adapter.network
    assert adapter.optimize(Levers()) and not adapter.optimize(Levers())
    assert getattr(adapter, adapter.network_attribute) is adapter.network
    assert torch.equal(adapter.predict_x0(x, table, 1, items(texts, texts, [3.0, 3.0], windows)), plain)
