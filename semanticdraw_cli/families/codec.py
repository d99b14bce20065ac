"""Pixels <-> latents through a diffusers AutoencoderKL: scaling, shift, tiling for large canvases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.lazy import inference_mode, lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

VAE_TILING_PIXELS = 1024 * 1024  # decode with the VAE's own tiling above this many pixels


def needs_vae_upcast(vae, dtype: torch.dtype) -> bool:
    """The SDXL VAE overflows in float16 (black/NaN images); its config says so with force_upcast."""
    return dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))


@dataclass
class VaeCodec:
    """Pixels <-> latents through a diffusers AutoencoderKL, with scaling and shift of the family."""

    vae: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    scaling: float
    shift: float = 0.0
    upcast: bool = False  # decode in float32 (the SDXL VAE overflows in float16)
    _white: torch.Tensor | None = field(default=None, repr=False)

    @property
    def factor(self) -> int:
        """Canvas pixels per latent pixel: each VAE block after the first halves the side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def _vae_dtype(self) -> torch.dtype:
        dtype = torch.float32 if self.upcast else self.dtype
        if self.vae.dtype != dtype:
            self.vae.to(dtype=dtype)
        return dtype

    @inference_mode
    def encode(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, C, h, w) float32 latent (distribution mean: deterministic)."""
        pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        big = rgb.shape[0] * rgb.shape[1] > VAE_TILING_PIXELS
        self.vae.enable_tiling() if big else self.vae.disable_tiling()
        latent = self.vae.encode(pixels.to(self.device, self._vae_dtype())).latent_dist.mean
        return ((latent.float() - self.shift) * self.scaling).float()

    def white(self) -> torch.Tensor:
        """(1, C, 1, 1) latent of a white image; computed once per VAE."""
        if self._white is None:
            latent = self.encode(np.full((64, 64, 3), 255, np.uint8))
            self._white = latent[..., 2:-2, 2:-2].mean(dim=(-2, -1), keepdim=True)
        return self._white

    @inference_mode
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """(N, C, h, w) latents -> (N, H, W, 3) uint8; tiled decoding for large canvases."""
        height, width = latents.shape[-2] * self.factor, latents.shape[-1] * self.factor
        self.vae.enable_tiling() if height * width > VAE_TILING_PIXELS else self.vae.disable_tiling()
        images = []
        for latent in latents:
            z = latent[None].to(self.device, self._vae_dtype()) / self.scaling + self.shift
            image = self.vae.decode(z).sample.float()
            if not torch.isfinite(image).all():
                raise RenderError("the VAE produced NaN/inf pixels; try --dtype float32")
            image = ((image[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0)
            images.append(image.cpu().numpy())
        return np.stack(images)


class CodecMixin:
    """The contract's pixel <-> latent members for an adapter holding a `codec` (VaeCodec)."""

    codec: VaeCodec

    @property
    def latent_factor(self) -> int:
        return self.codec.factor

    def encode_image(self, rgb: np.ndarray) -> torch.Tensor:
        return self.codec.encode(rgb)

    def white_latent(self) -> torch.Tensor:
        return self.codec.white()

    @inference_mode
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        return self.codec.decode(latents)
