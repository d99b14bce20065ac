"""Image prompts per region (IP-Adapter, Ye et al. 2023) for the UNet families and FLUX.1, through diffusers' loader.

A region's `reference` picture is encoded once by the adapter's CLIP image encoder (`encode_reference`);
its embedding travels as one more per-item key of the conditioning (`image`, with `image_weight`), so a
call may mix items with and without a reference. diffusers' `IPAdapterAttnProcessor2_0` adds
`scale · attention(image tokens)` to each cross-attention output; `ItemScale` makes that scale a per-item
weight, and an item of weight 0 gets `h + 0·a`, which is `h` bit for bit. FLUX.1's loader, encoder and
processors differ and live in `flux_ip_adapter`; the per-item embeds are the same, and its processor, which never
compares its scale with 0, gets the weights themselves, a tensor `torch.compile` traces (`ItemScale` breaks the graph).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import flux_ip_adapter, loading, presets
from semanticdraw_cli.lazy import inference_mode, lazy_module

if TYPE_CHECKING:
    import numpy as np
    import torch

    from semanticdraw_cli.families.base import Embeddings
else:
    torch = lazy_module("torch")

IMAGE_ENCODER_FOLDER = "image_encoder"  # beside the adapter's weights file, as in h94/IP-Adapter's folders
IMAGE_KEY, WEIGHT_KEY = "image", "image_weight"  # the per-item keys of `Conditioning.cond`
PRESETS = ("tiny", "small")  # `reference.adapter` names: a random IP-Adapter for the model preset of that name
WEIGHTS_FILE = "ip-adapter.safetensors"


class ItemScale:
    """The scale diffusers' IP-Adapter processor reads, one value per item: the processor only compares
    its scale with 0 (to skip the image branch) and multiplies the branch's output by it."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights  # (B, 1, 1): broadcasts over (B, tokens, channels)

    def __eq__(self, other: object) -> bool:
        return False  # never skipped: deciding would wait for the device; a weight of 0 adds exactly 0

    __hash__ = object.__hash__

    def __mul__(self, output: torch.Tensor) -> torch.Tensor:
        return self.weights.to(output.dtype) * output

    __rmul__ = __mul__


def locate(adapter: str, family: str) -> tuple[str, str, str]:
    """(local folder or hub repo, subfolder, weights file) of an adapter named as a local weights file, as
    owner/repo/sub/folders/file (h94/IP-Adapter/models/ip-adapter_sd15.safetensors) or as a preset name."""
    if adapter in PRESETS:
        return str(ensure_preset(family, adapter)), "", WEIGHTS_FILE
    path = Path(adapter)
    if path.is_absolute():
        return str(path.parent), "", path.name
    parts = adapter.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:-1]), parts[-1]


def attach(adapter, reference_adapter: str) -> None:
    """Load an IP-Adapter and its image encoder into the adapter's pipeline, once; another one replaces it."""
    if getattr(adapter, "ip_adapter", None) == reference_adapter:
        return
    pipe = adapter.pipe
    if getattr(adapter, "ip_adapter", None) is not None:
        detach(adapter)  # if the new one fails to load, none is loaded
    folder, subfolder, weight_name = locate(reference_adapter, adapter.model.family)
    try:
        with _offload_lifted(adapter):
            if flux_ip_adapter.uses_flux_loader(pipe):
                processors = flux_ip_adapter.load(pipe, folder, subfolder, weight_name, IMAGE_ENCODER_FOLDER, adapter.dtype)
            else:
                processors = unet_load(pipe, folder, subfolder, weight_name)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise RenderError(
            f"could not load the IP-Adapter {reference_adapter!r} into the {adapter.model.family} model ({error}); "
            f"check that it is an IP-Adapter for {adapter.model.family} with its {IMAGE_ENCODER_FOLDER}/ folder "
            "beside it"
        ) from error
    adapter.ip_processors = processors
    adapter.ip_adapter = reference_adapter
    adapter.ip_blank = encode_reference(adapter, None)[1]


@contextmanager
def _offload_lifted(adapter) -> Iterator[None]:
    """diffusers' offload hooks (`model.offload`) off while an IP-Adapter loads and put on again after, as diffusers'
    LoRA loader does: the IP-Adapter loader moves the new layers and the image encoder to the network's device,
    which is `meta` under `sequential` (their weights lost), and an image encoder loaded after the hooks were set
    would stay in CPU memory, unhooked, while the pictures it encodes are on the GPU."""
    offload = adapter.model.offload
    if offload == "none":
        yield
        return
    adapter.pipe.remove_all_hooks()
    try:
        yield
    finally:
        loading.place(adapter.pipe, offload, adapter.device)


def detach(adapter) -> None:
    """Unload the attached IP-Adapter and its image encoder; the network's processors go back to diffusers' own."""
    adapter.pipe.unload_ip_adapter()
    adapter.ip_adapter = adapter.ip_processors = None


@contextmanager
def reloaded_around_fusion(adapter) -> Iterator[None]:
    """Around fusing or unfusing a UNet's QKV projections: an attached IP-Adapter unloaded first and loaded again
    after. diffusers' `fuse_qkv_projections` sets its fused processor on every attention, dropping the adapter's
    while the UNet still sends image tokens, and `unfuse_qkv_projections` puts back the processors it saw when
    fusing; an adapter loaded after either keeps self-attention's processor (fused or not) and puts its own on
    cross-attention. FLUX.1's processors read the fused projections themselves: nothing to do there."""
    name = getattr(adapter, "ip_adapter", None)
    if name is None or flux_ip_adapter.uses_flux_loader(adapter.pipe):
        yield
        return
    detach(adapter)
    yield
    attach(adapter, name)


@inference_mode
def encode_reference(adapter, rgb: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(the picture's embedding, the unconditional one), each (1, ...) float32, as diffusers' pipelines make
    them: the projected image embedding and zeros, or for a Plus adapter the encoder's penultimate hidden
    states of the picture and of a black one. `rgb` None: only the unconditional one matters."""
    from diffusers.models.embeddings import ImageProjection
    from PIL import Image

    pipe = adapter.pipe
    if flux_ip_adapter.uses_flux_loader(pipe):
        return flux_ip_adapter.encode(pipe, adapter.device, rgb)
    encoder = pipe.image_encoder
    picture = Image.fromarray(rgb) if rgb is not None else Image.new("RGB", (8, 8))
    pixels = pipe.feature_extractor(picture, return_tensors="pt").pixel_values.to(adapter.device, encoder.dtype)
    if isinstance(pipe.unet.encoder_hid_proj.image_projection_layers[0], ImageProjection):
        embedding = encoder(pixels).image_embeds.float()
        return embedding, torch.zeros_like(embedding)
    hidden = encoder(torch.cat([pixels, torch.zeros_like(pixels)]), output_hidden_states=True).hidden_states[-2]
    return hidden[:1].float(), hidden[1:].float()


def unet_load(pipe, folder: str, subfolder: str, weight_name: str) -> list:
    """Load the adapter and its image encoder into a UNet pipeline; the UNet's IP-Adapter processors."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    pipe.load_ip_adapter(folder, subfolder=subfolder, weight_name=weight_name, image_encoder_folder=IMAGE_ENCODER_FOLDER)
    return [p for p in pipe.unet.attn_processors.values() if isinstance(p, IPAdapterAttnProcessor2_0)]


def image_embeds(adapter, context: Embeddings, batch: int) -> list[torch.Tensor] | None:
    """The network's image embeds of an attached IP-Adapter (None without one), one (B, 1 picture, ...) tensor,
    with each item's weight set on the processors; items of a scene without references get the blank embedding
    at weight 0."""
    if getattr(adapter, "ip_adapter", None) is None:
        return None
    embeds = context.get(IMAGE_KEY)
    if embeds is None:
        embeds = adapter.ip_blank.expand(batch, *adapter.ip_blank.shape[1:])
        weights = torch.zeros(batch, device=adapter.device)
    else:
        weights = context[WEIGHT_KEY]
    weights = weights.view(-1, 1, 1)
    flux = flux_ip_adapter.uses_flux_loader(adapter.pipe)  # its processor never compares its scale: a tensor will do
    scale = weights.to(adapter.dtype) if flux else ItemScale(weights)
    for processor in adapter.ip_processors:
        processor.scale = [scale]
    return [embeds.unsqueeze(1).to(adapter.dtype)]


def unet_inputs(adapter, context: Embeddings, batch: int) -> dict:
    """The UNet's `added_cond_kwargs` entry of an attached IP-Adapter ({} without one)."""
    embeds = image_embeds(adapter, context, batch)
    return {} if embeds is None else {"image_embeds": embeds}


def save_random_image_encoder(folder: Path, image_embed_dim: int) -> None:
    """A small random CLIP image encoder (CLIPVisionModelWithProjection) in `folder`, from torch's global generator."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=image_embed_dim)
    CLIPVisionModelWithProjection(config).save_pretrained(folder)


def build_random_adapter(network, folder: Path, image_embed_dim: int = 16, seed: int = 0) -> Path:
    """A seeded random IP-Adapter for `network` (weights file `ip-adapter.safetensors`) with a small CLIP image
    encoder in `image_encoder/` beside it, laid out as the published ones (h94's for a UNet, XLabs' for a FLUX.1
    transformer), so tests load it the real way."""
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        save_random_image_encoder(folder / IMAGE_ENCODER_FOLDER, image_embed_dim)
        if "joint_attention_dim" in network.config:
            weights = flux_ip_adapter.random_weights(network.config, image_embed_dim)
        else:
            weights = _unet_random_weights(network, image_embed_dim)
    path = folder / WEIGHTS_FILE
    save_file({key: value.contiguous() for key, value in weights.items()}, path)
    return path


def _unet_random_weights(unet, image_embed_dim: int) -> dict[str, torch.Tensor]:
    cross = unet.config.cross_attention_dim
    weights = {
        "image_proj.proj.weight": torch.randn(4 * cross, image_embed_dim) / image_embed_dim**0.5,
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    cross_attentions = [name for name in unet.attn_processors if not name.endswith("attn1.processor")]
    for index, name in enumerate(cross_attentions):  # diffusers numbers them 1, 3, 5, ...
        hidden = unet.get_submodule(name.removesuffix(".processor")).to_k.weight.shape[0]
        for part in ("to_k_ip", "to_v_ip"):
            weights[f"ip_adapter.{2 * index + 1}.{part}.weight"] = torch.randn(hidden, cross) / cross**0.5
    return weights


def preset_version() -> str:
    """The version a preset IP-Adapter's folder carries (the family presets' version). The content key names it,
    so a rebuilt preset makes the images it drew stale."""
    return str(presets.PRESET_VERSION)


def preset_folder(family: str, name: str) -> Path:
    return presets.cache_root() / "presets" / f"{family}-ip-adapter-{name}-v{preset_version()}"


def ensure_preset(family: str, name: str) -> Path:
    """The folder of a preset IP-Adapter (`WEIGHTS_FILE` and `image_encoder/`), built on first use for the
    network of the family preset of the same name."""
    return presets.build_cached(preset_folder(family, name), lambda staging: _build_preset(family, name, staging),
                                marker=WEIGHTS_FILE)


def _build_preset(family: str, name: str, folder: Path) -> None:
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel

    model = presets.ensure_preset(family, name)
    if (model / "unet").is_dir():
        network = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    else:
        network = FluxTransformer2DModel.from_pretrained(model, subfolder="transformer")
    build_random_adapter(network, folder)
