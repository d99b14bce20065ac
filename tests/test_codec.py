"""The VAE codec reports decode progress per tile without changing pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semanticdraw_cli.families import codec as codec_module, presets

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def codec() -> codec_module.VaeCodec:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(presets.ensure_preset("sd15", "tiny") / "vae").eval()
    vae.tile_latent_min_size, vae.tile_sample_min_size = 8, 64  # small tiles: a small latent is tiled
    return codec_module.VaeCodec(vae, torch.device("cpu"), torch.float32, vae.config.scaling_factor)


def test_tiled_decode_reports_every_tile_and_the_same_pixels(codec, monkeypatch):
    monkeypatch.setattr(codec_module, "VAE_TILING_PIXELS", 0)
    latents = torch.randn(2, 4, 16, 24, generator=torch.Generator().manual_seed(0))  # (N, C, h, w)
    calls = []
    reported = codec.decode(latents, on_tile=lambda done, total: calls.append((done, total)))
    tiles = 3 * 4  # latent 16×24 in windows of 8 with stride 6
    assert calls == [(k, 2 * tiles) for k in range(1, 2 * tiles + 1)]
    assert (reported == codec.decode(latents)).all()  # progress changes nothing


def test_untiled_decode_reports_each_image(codec):
    calls = []
    codec.decode(torch.zeros(3, 4, 8, 8), on_tile=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("wrap, dims", [((False, True), (0, 3)), ((True, False), (2, 0)), ((True, True), (1, 2))])
def test_a_wrapped_decode_rolls_with_its_latent_and_leaves_the_layers_as_they_were(codec, wrap, dims):
    """Circular padding along the wrapped axes: rolling the latent by k rolls the picture by 8k (up to one
    level of rounding), which zero padding does not; afterwards the decoder decodes as before."""
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    plain = codec.decode(latent)
    picture = codec.decode(latent, wrap=wrap)[0].astype(int)
    rolled = codec.decode(torch.roll(latent, dims, dims=(-2, -1)), wrap=wrap)[0].astype(int)
    shift = (8 * dims[0], 8 * dims[1])
    assert abs(rolled - np.roll(picture, shift, axis=(0, 1))).max() <= 1
    zero_padded = codec.decode(torch.roll(latent, dims, dims=(-2, -1)))[0].astype(int)
    assert abs(zero_padded - np.roll(plain[0].astype(int), shift, axis=(0, 1))).max() > 8
    assert (codec.decode(latent) == plain).all()
