"""ControlNets for the transformer families (sd3, flux): loading one per reference, the tiny presets, the control
picture's latent, and the residuals a call's items add to the transformer (architecture.md §4.2).

These ControlNets read the control picture as a VAE latent, as diffusers' StableDiffusion3ControlNetPipeline and
FluxControlNetPipeline encode it (shifted and scaled; FLUX's packed into 2×2 patches). The whole canvas's picture
is encoded once per prepare (`control_source`) and each window's crop is cut from that latent: it differs from
encoding each crop alone only near the crop's edges, within the VAE encoder's reach, and for a one-window canvas it
is the pipeline's latent. The latent is the VAE distribution's mean (the pipelines draw a sample from it).
Residuals are scaled per item by the entry's weight and summed over the call's ControlNets, as diffusers'
multi-ControlNet models sum them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.defaults import CONTROL_PRESETS
from semanticdraw_cli.families import controlnet, presets
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import torch

    from semanticdraw_cli.families.base import ControlInput, Embeddings
else:
    torch = lazy_module("torch")

# What a ControlNet shares with the family's transformer: its residuals are added to the transformer's tokens
SD3_KEYS = ("in_channels", "patch_size", "num_attention_heads", "attention_head_dim", "pooled_projection_dim")
FLUX_KEYS = ("in_channels", "num_attention_heads", "attention_head_dim", "joint_attention_dim", "pooled_projection_dim")
UNSUPPORTED = {  # config keys of ControlNets that read something else than the picture's latent
    "extra_conditioning_channels": "an inpainting ControlNet (extra conditioning channels: a mask)",
    "num_mode": "a union ControlNet (it needs a control mode per picture)",
    "conditioning_embedding_channels": "a ControlNet that reads pixels (XLabs' input hint block)",
}


def build_preset(family: str, name: str, folder: Path) -> None:
    """A ControlNet of the family preset `name`'s transformer (its first blocks' weights, as diffusers'
    `from_transformer` starts training), with seeded random output projections so that control shows and a
    He-initialised embedder of the picture's latent so that the picture does."""
    from diffusers import FluxControlNetModel, FluxTransformer2DModel, SD3ControlNetModel, SD3Transformer2DModel

    network = SD3Transformer2DModel if family == "sd3" else FluxTransformer2DModel
    transformer = network.from_pretrained(presets.ensure_preset(family, name) / "transformer")
    config = transformer.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED + 1)
        if family == "sd3":
            net = SD3ControlNetModel.from_transformer(transformer, num_layers=1, num_extra_conditioning_channels=0)
            zero_initialised = [*net.controlnet_blocks, net.pos_embed_input]
        else:
            net = FluxControlNetModel.from_transformer(
                transformer, num_layers=1, num_single_layers=1, attention_head_dim=config.attention_head_dim,
                num_attention_heads=config.num_attention_heads,
            )
            zero_initialised = [*net.controlnet_blocks, *net.controlnet_single_blocks, net.controlnet_x_embedder]
        for module in zero_initialised:
            for parameter in module.parameters():
                torch.nn.init.normal_(parameter, std=controlnet.RESIDUAL_STD)
        controlnet.he_normal(net.pos_embed_input.proj if family == "sd3" else net.controlnet_x_embedder)
    net.save_pretrained(folder)


def ensure_preset(family: str, name: str) -> Path:
    """The folder of the family's preset ControlNet `name`, built on first use."""
    return controlnet.ensure_preset(family, name, build=build_preset)


def load(reference: str, family: str, transformer, device: torch.device, dtype: torch.dtype):
    """The sd3 or flux ControlNet of `reference` on the device, refused naming it when made for another family or
    of a kind these adapters do not run."""
    from diffusers import FluxControlNetModel, SD3ControlNetModel

    cls, keys = (SD3ControlNetModel, SD3_KEYS) if family == "sd3" else (FluxControlNetModel, FLUX_KEYS)
    source = str(ensure_preset(family, reference)) if reference in CONTROL_PRESETS else reference
    return controlnet.load_checked(cls, reference, source, family, transformer.config, keys, device, dtype, UNSUPPORTED)


def per_item(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B,) weights -> (B, 1, 1), the shape that scales (B, tokens, D) residuals item by item."""
    return scale.to(dtype).view(-1, 1, 1)


class TransformerControl:
    """ControlNets of a transformer adapter (`self.transformer`, `self.codec`, `self.device`, `self.dtype`):
    loading once per adapter, and the control picture's latent."""

    control_family: str  # the family whose ControlNets these are

    def controlnet(self, reference: str):
        loaded = self.__dict__.setdefault("_controlnets", {})
        if reference not in loaded:
            loaded[reference] = load(reference, self.control_family, self.transformer, self.device, self.dtype)
        return loaded[reference]

    def control_source(self, reference: str, rgb: np.ndarray) -> tuple[torch.Tensor, int]:
        """The picture's latent (C, h, w) float32, cropped like the canvas latent (1 per latent pixel). SD3's
        pipeline leaves out the VAE's shift for a ControlNet that zeroes its pooled input (InstantX's)."""
        codec = self.codec
        if getattr(self.controlnet(reference).config, "force_zeros_for_pooled_projection", False):
            codec = replace(codec, shift=0.0)
        return codec.encode(rgb)[0], 1


class SD3Control(TransformerControl):
    control_family = "sd3"

    def control_blocks(self, controls: Sequence[ControlInput], x: torch.Tensor, t: torch.Tensor,
                       context: Embeddings) -> dict:
        """The transformer's `block_controlnet_hidden_states`: each ControlNet's block samples, scaled per item,
        summed (StableDiffusion3ControlNetPipeline's inputs)."""
        total = None
        for control in controls:
            net = self.controlnet(control.model)
            pooled = context["pooled"].to(self.dtype)
            samples = net(
                hidden_states=x, timestep=t,
                encoder_hidden_states=context["text"].to(self.dtype) if net.config.joint_attention_dim else None,
                pooled_projections=torch.zeros_like(pooled) if net.config.force_zeros_for_pooled_projection else pooled,
                controlnet_cond=control.image.to(self.dtype), conditioning_scale=per_item(control.scale, self.dtype),
                return_dict=False,
            )[0]
            total = samples if total is None else [a + b for a, b in zip(total, samples)]
        return {} if total is None else {"block_controlnet_hidden_states": total}


class FluxControl(TransformerControl):
    control_family = "flux"

    def control_samples(self, controls: Sequence[ControlInput], inputs: dict, guidance: torch.Tensor) -> dict:
        """The transformer's `controlnet_block_samples` and `controlnet_single_block_samples` for its keyword
        `inputs` (packed tokens, timestep, text, ids): each ControlNet's, scaled per item, summed as
        FluxMultiControlNetModel sums them; a ControlNet with a guidance embedding reads each item's guidance."""
        from diffusers import FluxPipeline

        if not controls:
            return {}
        outputs = []  # per ControlNet: (block samples, single-block samples), either None when it has no such blocks
        for control in controls:
            net = self.controlnet(control.model)
            b, c, h, w = control.image.shape
            outputs.append(net(
                **inputs, controlnet_cond=FluxPipeline._pack_latents(control.image.to(self.dtype), b, c, h, w),
                guidance=guidance.to(self.device, torch.float32) if net.config.guidance_embeds else None,
                conditioning_scale=per_item(control.scale, self.dtype), return_dict=False,
            ))
        blocks, singles = outputs[0]
        for more_blocks, more_singles in outputs[1:]:
            blocks = blocks if blocks is None or more_blocks is None else [a + b for a, b in zip(blocks, more_blocks)]
            singles = singles if singles is None or more_singles is None else [
                a + b for a, b in zip(singles, more_singles)]
        return {"controlnet_block_samples": blocks, "controlnet_single_block_samples": singles}
