"""Region LoRAs on a loaded network (`families/region_loras.py`), on every family's tiny preset: a call in a
LoRA's variant equals the network with that LoRA fused, and a call without one is the base network bit for
bit, before and after LoRAs were loaded and used."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lora_files import make_lora
from semanticdraw_cli.families import region_loras, registry
from semanticdraw_cli.families.base import Conditioning
from semanticdraw_cli.scene.dicts import scene_from_dict
from semanticdraw_cli.scene.loras import file_digest
from semanticdraw_cli.scene.types import RegionLora
from semanticdraw_cli.tiles import tile_grid

pytestmark = pytest.mark.slow
WEIGHT = 0.7


def setup_for(family: str):
    """The family's tiny model with its default accelerator, a step table, and two items of one window."""
    scene = scene_from_dict({"canvas": {"width": 128, "height": 128}, "model": {"family": family, "checkpoint": "tiny"},
                             "regions": [{"prompt": "a fox", "mask": {"rect": [0, 0, 64, 64]}}]}, None)
    adapter = registry.load_adapter(scene.model, torch.device("cpu"), torch.float32)
    table = adapter.step_table(scene.sampler, scene.canvas)
    side = 128 // adapter.latent_factor
    window = tile_grid(side, side, side, side)[0]
    items = Conditioning(
        cond=adapter.encode_text(["a fox", "a red fox"]),
        uncond=adapter.encode_text(["", ""]) if adapter.cfg_guidance else None,
        guidance=torch.tensor([2.0, 3.0]), windows=[window, window],
    )
    x = torch.randn(2, adapter.latent_channels, side, side, generator=torch.Generator().manual_seed(1))
    return scene, adapter, table, items, x


@pytest.mark.parametrize("family", sorted(registry.families()))
def test_a_lora_variant_equals_the_lora_fused_and_no_variant_is_the_base_network(family, tmp_path):
    """A few seconds per family (its tiny model loads): the real PEFT loading path on every network."""
    scene, adapter, table, items, x = setup_for(family)
    path = make_lora(family, tmp_path / "l.safetensors", network=adapter.network)
    lora = RegionLora(str(path), WEIGHT, None, file_digest(path))
    base = adapter.predict_x0(x, table, 0, items)
    name = region_loras.load(adapter, lora, family)
    assert region_loras.load(adapter, lora, family) == name and len(adapter.network.peft_config) == 1  # loaded once
    with_lora = adapter.predict_x0(x, table, 0, dataclasses.replace(items, variant=((name, WEIGHT),)))
    assert torch.equal(adapter.predict_x0(x, table, 0, items), base)  # adapters disabled: the base network exactly
    assert (with_lora - base).abs().max() > 1e-3  # the LoRA does something

    # The same network with the LoRA fused into its weights. Compared at the last step, where x0 is nearly the
    # input: at the first, x0 = (x − s·eps)/a scales the rounding of W·x + ΔW·x against (W + ΔW)·x by 1/a
    # (up to 4e-5 for sd15's LCM schedule, from 1e-6 in eps).
    last = table.steps - 1
    with_lora = adapter.predict_x0(x, table, last, dataclasses.replace(items, variant=((name, WEIGHT),)))
    adapter.network.enable_lora()
    adapter.network.fuse_lora(adapter_names=[name])  # at the weight `set_adapters` gave it
    adapter.network.unload_lora()
    adapter.region_loras = None
    torch.testing.assert_close(adapter.predict_x0(x, table, last, items), with_lora, atol=1e-5, rtol=0)


def test_unloading_deletes_the_adapters_no_scene_names_and_returns_to_the_base_network(tmp_path):
    scene, adapter, table, items, x = setup_for("sd15")
    base = adapter.predict_x0(x, table, 0, items)
    loras = [make_lora("sd15", tmp_path / f"{i}.safetensors", seed=i, network=adapter.network) for i in range(2)]
    names = [region_loras.load(adapter, RegionLora(str(p), 1.0, None, file_digest(p)), "sd15") for p in loras]
    adapter.predict_x0(x, table, 0, dataclasses.replace(items, variant=tuple((n, 1.0) for n in names)))
    assert region_loras.unload_others(adapter, {names[0]}) == [names[1]]
    assert set(adapter.network.peft_config) == {names[0]}
    assert torch.equal(adapter.predict_x0(x, table, 0, items), base)


def test_a_variant_naming_no_loaded_lora_is_a_bug_reported_as_such():
    class Bare:
        network = None

    with pytest.raises(Exception, match="never loaded"):
        region_loras.activate(Bare(), (("region_x", 1.0),))
