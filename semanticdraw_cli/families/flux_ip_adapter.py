"""Image prompts per region for FLUX.1: XLabs' IP-Adapter layout through diffusers' `FluxIPAdapterMixin`.

diffusers loads the adapter into the transformer's double blocks as `FluxIPAdapterAttnProcessor`s, which add
`scale · attention(image query, picture tokens)` to each block's image stream, and projects the CLIP image
embedding into 4 tokens of the T5 width. It applies one scale to the whole batch and ignores masks
(diffusers PR #13956), so a picture would act on the whole canvas. Here the scale is per item
(a (B, 1, 1) weight tensor, which the processor multiplies by as it does a float, and which `torch.compile`
traces) and each item carries its own region's embedding: only the items of a region's (window, region) pairs
see its picture, and an item without one (the blank embedding at weight 0) adds 0, which leaves the block's
output bit for bit as a transformer without the adapter computes it. No processor of our own is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semanticdraw_cli.lazy import inference_mode, lazy_module

if TYPE_CHECKING:
    import numpy as np
    import torch
else:
    torch = lazy_module("torch")

TOKENS = 4  # image tokens of a plain (XLabs) adapter: its projection holds 4 × the T5 width rows


def uses_flux_loader(pipe) -> bool:
    """Whether the pipeline loads IP-Adapters the FLUX way (XLabs weights into a transformer)."""
    from diffusers.loaders import FluxIPAdapterMixin

    return isinstance(pipe, FluxIPAdapterMixin)


def load(pipe, folder: str, subfolder: str, weight_name: str, encoder_folder: str, dtype: torch.dtype) -> list:
    """Load the adapter and its CLIP image encoder (from `encoder_folder` beside the weights, in the network's
    dtype: diffusers' default is float16) into a FluxPipeline; the transformer's IP-Adapter processors."""
    from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor

    encoder_subfolder = "/".join(part for part in (subfolder, encoder_folder) if part)
    pipe.load_ip_adapter(folder, weight_name=weight_name, subfolder=subfolder,
                         image_encoder_pretrained_model_name_or_path=folder,
                         image_encoder_subfolder=encoder_subfolder, image_encoder_dtype=dtype)
    return [p for p in pipe.transformer.attn_processors.values() if isinstance(p, FluxIPAdapterAttnProcessor)]


@inference_mode
def encode(pipe, device: torch.device, rgb: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the picture's embedding, the unconditional one), each (1, D) float32, as FluxPipeline makes them: the
    encoder's projected image embedding of the picture and of a black picture (its negative image).
    `rgb` None: the black picture's, twice."""
    from PIL import Image

    def embedding(picture):
        pixels = pipe.feature_extractor(picture, return_tensors="pt").pixel_values
        return pipe.image_encoder(pixels.to(device, pipe.image_encoder.dtype)).image_embeds.float()

    black = embedding(Image.new("RGB", (8, 8)))  # every black picture is the same after resizing
    return (black if rgb is None else embedding(Image.fromarray(rgb))), black


def random_weights(config, image_embed_dim: int) -> dict[str, torch.Tensor]:
    """Random XLabs-layout IP-Adapter tensors for a FLUX.1 transformer of `config`, named as XLabs' files name
    them (`ip_adapter_proj_model.*`, `double_blocks.N.processor.*`), so diffusers' renaming runs; drawn from
    torch's global generator (the caller seeds it)."""
    width = config["joint_attention_dim"]  # the picture's tokens are read beside T5's
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    weights = {
        "ip_adapter_proj_model.proj.weight": torch.randn(TOKENS * width, image_embed_dim) / image_embed_dim**0.5,
        "ip_adapter_proj_model.proj.bias": torch.zeros(TOKENS * width),
        "ip_adapter_proj_model.norm.weight": torch.ones(width),
        "ip_adapter_proj_model.norm.bias": torch.zeros(width),
    }
    for block in range(config["num_layers"]):
        for part in ("k", "v"):
            name = f"double_blocks.{block}.processor.ip_adapter_double_stream_{part}_proj"
            weights[f"{name}.weight"] = torch.randn(hidden, width) / width**0.5
            weights[f"{name}.bias"] = torch.randn(hidden) / width**0.5
    return weights
