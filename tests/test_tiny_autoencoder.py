"""The tiny autoencoders of `model.preview_decoder`: a preview of every family's shape, the random presets, and the
errors of a decoder that cannot be read or does not fit."""

from __future__ import annotations

import functools
import json

import huggingface_hub.constants
import pytest
import torch

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import registry, tiny_autoencoder
from semanticdraw_cli.scene.types import Accelerator, Model

WITH_ONE = [name for name, spec in registry.families().items() if spec.tiny_autoencoder is not None]
CPU = torch.device("cpu")


@functools.cache
def adapter_of(family: str):
    """The family's tiny preset, loaded once for this file."""
    return registry.load_adapter(model(family, preview_decoder=None), CPU, torch.float32)


def model(family: str, checkpoint: str = "tiny", preview_decoder: str | None = "tiny-ae") -> Model:
    return Model(family, checkpoint, Accelerator("none"), preview_decoder=preview_decoder)


def test_every_family_but_klein_names_its_taesd():
    assert WITH_ONE == ["sd15", "sd2", "sdxl", "sd3", "flux"]
    assert registry.family("sdxl").tiny_autoencoder == "madebyollin/taesdxl"
    assert registry.family("flux").tiny_autoencoder == "madebyollin/taef1"


@pytest.mark.slow
@pytest.mark.parametrize("family", WITH_ONE)
def test_a_preview_has_the_shape_of_the_full_decode_and_other_pixels(family, monkeypatch):
    loads = []
    real_load = tiny_autoencoder.load
    monkeypatch.setattr(tiny_autoencoder, "load", lambda *args: loads.append(args[0]) or real_load(*args))
    adapter = adapter_of(family)
    latents = torch.randn(2, adapter.latent_channels, 6, 10, generator=torch.Generator().manual_seed(0))  # (N, C, h, w)
    full = adapter.decode(latents)
    preview = adapter.decode_preview(latents, model(family))
    assert preview.shape == full.shape == (2, 6 * adapter.latent_factor, 10 * adapter.latent_factor, 3)
    assert preview.dtype == full.dtype
    assert (preview != full).mean() > 0.5  # the tiny autoencoder decoded it, not the VAE
    assert (adapter.decode_preview(latents, model(family, preview_decoder=None)) == full).all()  # none: the VAE itself
    assert (adapter.decode_preview(latents, model(family)) == preview).all()
    assert len(loads) == 1  # loaded once per adapter, at the first preview


def test_the_preset_has_the_family_latent_channels_and_loads_the_real_way(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMANTICDRAW_CACHE", str(tmp_path))
    decoder = tiny_autoencoder.load(model("sd3"), 16, CPU, torch.float32)
    folder = tiny_autoencoder.preset_folder("sd3", "tiny")
    config = json.loads((folder / "config.json").read_text())
    assert (config["_class_name"], config["latent_channels"]) == ("AutoencoderTiny", 16)
    assert (config["scaling_factor"], config["shift_factor"]) == (1.0, 0.0)  # TAESD reads the sampled latents as they are
    assert next(folder.glob("*.safetensors"), None) is not None
    assert type(decoder).__name__ == "AutoencoderTiny" and decoder.config.latent_channels == 16


def test_a_hub_decoder_that_is_not_cached_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    with pytest.raises(RenderError) as refused:
        tiny_autoencoder.load(model("sd15", checkpoint="someone/real-model"), 4, CPU, torch.float32)
    message = str(refused.value)
    assert "madebyollin/taesd" in message and "HF_HUB_OFFLINE is set" in message
    assert "download madebyollin/taesd" in message and "remove model.preview_decoder" in message


def test_a_folder_for_other_latents_is_refused_naming_both(tmp_path):
    folder = tmp_path / "taesd3"
    tiny_autoencoder.build_preset("tiny", 16, folder)
    with pytest.raises(RenderError) as refused:
        tiny_autoencoder.load(model("sd15", preview_decoder=str(folder)), 4, CPU, torch.float32)
    assert "16 latent channels" in str(refused.value) and "4-channel latents of sd15" in str(refused.value)


def test_a_folder_without_a_config_says_what_it_should_hold(tmp_path):
    with pytest.raises(RenderError) as refused:
        tiny_autoencoder.load(model("sd15", preview_decoder=str(tmp_path)), 4, CPU, torch.float32)
    assert f"check that {tmp_path} is an AutoencoderTiny folder" in str(refused.value)


def test_klein_has_none():
    with pytest.raises(RenderError, match="the klein family has no tiny autoencoder"):
        tiny_autoencoder.load(model("klein"), 128, CPU, torch.float32)



@pytest.mark.slow
def test_a_folder_decodes_as_diffusers_pipelines_decode_with_its_scaling_and_shift(tmp_path):
    """`latents / scaling_factor + shift_factor` from the decoder's own config, then its [-1, 1] pictures to bytes,
    as a diffusers pipeline given the tiny autoencoder as its `vae` decodes."""
    from diffusers import AutoencoderTiny

    folder = tmp_path / "taesd"
    tiny_autoencoder.build_preset("tiny", 4, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "scaling_factor": 2.0, "shift_factor": 0.5}))
    adapter = adapter_of("sd15")
    latents = torch.randn(1, 4, 6, 10, generator=torch.Generator().manual_seed(1))
    preview = adapter.decode_preview(latents, model("sd15", preview_decoder=str(folder)))
    with torch.no_grad():
        pixels = AutoencoderTiny.from_pretrained(folder).decode(latents / 2.0 + 0.5).sample  # (1, 3, H, W) in [-1, 1]
    expected = ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert (preview[0] == expected).all()
    assert not (adapter.decode_preview(latents, model("sd15")) == preview).all()  # same weights, scaling 1 and shift 0
