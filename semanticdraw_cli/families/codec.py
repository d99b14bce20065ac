"""Pixels <-> latents through a diffusers AutoencoderKL: scaling, shift, tiling for large canvases; previews through
a tiny autoencoder (`tiny_autoencoder`) decoded the same way."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import tiny_autoencoder
from semanticdraw_cli.lazy import inference_mode, lazy_module

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.scene.types import Model
else:
    torch = lazy_module("torch")

VAE_TILING_PIXELS = 1024 * 1024  # decode with the VAE's own tiling above this many pixels
TileCallback = Callable[[int, int], None]  # (decoder passes done, passes in all)
NO_WRAP = (False, False)  # (rows, columns) circular: `canvas.wrap`


@contextmanager
def circular_padding(module: torch.nn.Module, wrap: tuple[bool, bool]) -> Iterator[None]:
    """While inside, the module's padded Conv2d layers pad circularly along the wrapped axes (rows,
    columns) and with zeros along the others, so a decoded wrapped canvas tiles without a seam; restored
    after. One forward per layer rather than `padding_mode`, which is circular on both axes or neither."""
    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.padding_mode == "zeros"
             and isinstance(m.padding, tuple) and any(m.padding)] if any(wrap) else []
    for conv in convs:
        conv.forward = _circular_forward(conv, wrap)
    try:
        yield
    finally:
        for conv in convs:
            del conv.forward  # the class's forward again


def _circular_forward(conv: torch.nn.Conv2d, wrap: tuple[bool, bool]) -> Callable:
    pad_h, pad_w = conv.padding
    circular = (pad_w, pad_w, 0, 0) if wrap[1] else (0, 0, 0, 0)
    circular = circular[:2] + ((pad_h, pad_h) if wrap[0] else (0, 0))
    zeros = (0 if wrap[0] else pad_h, 0 if wrap[1] else pad_w)

    def forward(x: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(x, circular, mode="circular")
        return torch.nn.functional.conv2d(padded, conv.weight, conv.bias, conv.stride, zeros, conv.dilation, conv.groups)

    return forward


def needs_vae_upcast(vae, dtype: torch.dtype) -> bool:
    """The SDXL VAE overflows in float16 (black/NaN images); its config says so with force_upcast."""
    return dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))


@dataclass
class VaeCodec:
    """Pixels <-> latents through a diffusers AutoencoderKL (or, decoding previews, an AutoencoderTiny), with scaling
    and shift of the family."""

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
    def decode(
        self, latents: torch.Tensor, on_tile: TileCallback | None = None, wrap: tuple[bool, bool] = NO_WRAP
    ) -> np.ndarray:
        """(N, C, h, w) latents -> (N, H, W, 3) uint8; tiled decoding for large canvases, except on a wrapped
        canvas (`wrap`: rows, columns), decoded whole with circular padding.

        `on_tile(done, total)` is called after each decoder pass (one per tile, or one per image untiled).
        """
        height, width = latents.shape[-2] * self.factor, latents.shape[-1] * self.factor
        tiled = height * width > VAE_TILING_PIXELS and not any(wrap)
        self.vae.enable_tiling() if tiled else self.vae.disable_tiling()
        total = len(latents) * (self._tiles(*latents.shape[-2:]) if tiled else 1)
        done = 0

        def count(*_) -> None:
            nonlocal done
            done += 1
            on_tile(done, max(done, total))

        hook = self.vae.decoder.register_forward_hook(count) if on_tile else None
        try:
            images = []
            for latent in latents:
                z = latent[None].to(self.device, self._vae_dtype()) / self.scaling + self.shift
                with circular_padding(self.vae.decoder, wrap):
                    image = self.vae.decode(z).sample.float()
                if not torch.isfinite(image).all():
                    raise RenderError("the VAE produced NaN/inf pixels; try --dtype float32")
                image = ((image[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0)
                images.append(image.cpu().numpy())
        finally:
            if hook is not None:
                hook.remove()
        return np.stack(images)

    def _tiles(self, height: int, width: int) -> int:
        """Decoder passes of the VAE's own tiling for one (height, width) latent, as diffusers splits it."""
        size = getattr(self.vae, "tile_latent_min_size", 0)
        stride = int(size * (1 - getattr(self.vae, "tile_overlap_factor", 0.25)))
        if stride <= 0 or (height <= size and width <= size):
            return 1
        return math.ceil(height / stride) * math.ceil(width / stride)


class CodecMixin:
    """The contract's pixel <-> latent members for an adapter holding a `codec` (VaeCodec)."""

    codec: VaeCodec
    latent_channels: int

    @property
    def latent_factor(self) -> int:
        return self.codec.factor

    def encode_image(self, rgb: np.ndarray) -> torch.Tensor:
        return self.codec.encode(rgb)

    def white_latent(self) -> torch.Tensor:
        return self.codec.white()

    @inference_mode
    def decode(
        self, latents: torch.Tensor, on_tile: TileCallback | None = None, wrap: tuple[bool, bool] = NO_WRAP
    ) -> np.ndarray:
        return self.codec.decode(latents, on_tile, wrap)

    @inference_mode
    def decode_preview(self, latents: torch.Tensor, model: Model, wrap: tuple[bool, bool] = NO_WRAP) -> np.ndarray:
        """Previews through `model.preview_decoder` (a tiny autoencoder, loaded once per adapter and decoder), or
        through the full VAE when the scene names none."""
        if model.preview_decoder is None:
            return self.decode(latents, wrap=wrap)
        decoders = self.__dict__.setdefault("_preview_decoders", {})
        if model.preview_decoder not in decoders:
            device, dtype = self.codec.device, self.codec.dtype
            tiny = tiny_autoencoder.load(model, self.latent_channels, device, dtype)
            decoders[model.preview_decoder] = VaeCodec(tiny, device, dtype, tiny.config.scaling_factor,
                                                       tiny.config.shift_factor or 0.0)
        return decoders[model.preview_decoder].decode(latents, wrap=wrap)
