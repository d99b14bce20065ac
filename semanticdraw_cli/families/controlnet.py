"""ControlNets for the UNet families (sd15, sdxl): loading one per reference, the tiny presets, and the residuals
a call's items add to the UNet (architecture.md §4.2). The preset cache and the family check at load are shared
with the transformer families' ControlNets (`families.controlnet_dit`).

A ControlNet runs on the same batch as the UNet, each item with its own crop of its control picture
(`base.ControlInput`); its residuals are scaled per item by the entry's weight and summed over the
ControlNets of the call, as diffusers' MultiControlNet sums them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.defaults import CONTROL_PRESETS
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import presets
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import torch

    from semanticdraw_cli.families.base import ControlInput
else:
    torch = lazy_module("torch")

RESIDUAL_STD = 0.02  # the random presets' zero-initialised output convolutions get this std, so control shows
SILU_GAIN = 2.0  # He init's gain before a SiLU: its slope is 1/2 at 0, so small signals keep their size through it
PRESET_REVISION = 1  # the preset ControlNets' weights within a family preset version (1: they read their picture)


def preset_version() -> str:
    """The version a preset ControlNet's folder carries: the family presets' version, then this module's revision.
    The content key names it, so a rebuilt preset makes the images it drew stale."""
    return f"{presets.PRESET_VERSION}.{PRESET_REVISION}"


def preset_folder(family: str, name: str) -> Path:
    return presets.cache_root() / "presets" / f"{family}-controlnet-{name}-v{preset_version()}"


def ensure_preset(family: str, name: str, build: Callable[[str, str, Path], None] | None = None) -> Path:
    """The folder of a preset ControlNet, built on first use by `build(family, name, folder)` (the UNet families'
    `ControlNetModel` when None): config.json and weights."""
    build = build or build_unet_preset
    return presets.build_cached(preset_folder(family, name), lambda staging: build(family, name, staging),
                                marker="config.json")


def build_unet_preset(family: str, name: str, folder: Path) -> None:
    """A ControlNet of the family preset `name`'s UNet layout, seeded random weights (output convolutions too), whose
    picture embedding reads the picture."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(presets.ensure_preset(family, name) / "unet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED + 1)
        net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32, 32))
        zero_initialised = [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
        for module in zero_initialised:
            for parameter in module.parameters():
                torch.nn.init.normal_(parameter, std=RESIDUAL_STD)
        embedding = net.controlnet_cond_embedding
        for layer in (embedding.conv_in, *embedding.blocks):
            he_normal(layer, SILU_GAIN)
        he_normal(embedding.conv_out)
    net.save_pretrained(folder)


def he_normal(layer: torch.nn.Module, gain: float = 1.0) -> None:
    """He-initialise a random ControlNet's layer on its picture's path, so that the picture drives the residuals.
    diffusers' init shrinks the picture's signal in each layer and zeroes the last: a black and a white picture
    gave nearly the same residuals, and a test could not tell a wrong crop."""
    torch.nn.init.normal_(layer.weight, std=gain / layer.weight[0].numel() ** 0.5)  # weight[0]: one output's inputs


def load_unet_controlnet(reference: str, family: str, unet, device: torch.device, dtype: torch.dtype):
    """The ControlNetModel of `reference` (a preset name, local folder or hub id) on the device, refused with
    the file named when it is not made for this UNet (another family's)."""
    from diffusers import ControlNetModel

    source = str(ensure_preset(family, reference)) if reference in CONTROL_PRESETS else reference
    return load_checked(ControlNetModel, reference, source, family, unet.config,
                        ("cross_attention_dim", "addition_embed_type"), device, dtype)


def load_checked(cls, reference: str, source: str, family: str, network_config, keys: Sequence[str],
                 device: torch.device, dtype: torch.dtype, unsupported: dict[str, str] | None = None):
    """A ControlNet of class `cls` from `source` on the device, refused naming `reference` when its config is of
    another class or differs from the family's network in one of `keys` (made for another family), or sets one
    of the `unsupported` keys (config key: what such a ControlNet is)."""
    try:
        config = cls.load_config(source)
    except (OSError, ValueError) as error:
        raise RenderError(f"cannot read the ControlNet {reference!r}: {error}\nwhat to do: give a local folder "
                          "with config.json and weights, or a hub id that is in the cache (HF_HUB_OFFLINE)") from None
    _refuse_other_family(reference, family, config, network_config, cls.__name__, keys)
    for key, kind in (unsupported or {}).items():
        if config.get(key):
            raise RenderError(f"the ControlNet {reference!r} is {kind}, which {family} does not run here\n"
                              f"what to do: use a plain {cls.__name__} (one control picture, no mask or mode)")
    try:
        net = cls.from_pretrained(source, torch_dtype=dtype)
    except (OSError, ValueError) as error:
        raise RenderError(f"cannot load the ControlNet {reference!r}: {error}") from None
    return net.to(device).eval()


def _refuse_other_family(reference: str, family: str, config: dict, network_config, expected: str,
                         keys: Sequence[str]) -> None:
    kind = config.get("_class_name")
    if kind != expected:
        raise RenderError(f"the ControlNet {reference!r} is a {kind}, not a {expected} for {family}\n"
                          f"what to do: use a ControlNet trained for {family}")
    for key in keys:
        theirs, ours = config.get(key), getattr(network_config, key, None)
        if theirs != ours:
            raise RenderError(f"the ControlNet {reference!r} is made for another family ({key} {theirs}, the "
                              f"{family} network's is {ours})\nwhat to do: use a ControlNet trained for {family}")


class UNetControl:
    """ControlNet residuals for a UNet adapter (`self.unet`, `self.model`, `self.device`, `self.dtype`)."""

    def controlnet(self, reference: str):
        """The loaded ControlNet of `reference`, loaded once per adapter."""
        loaded = self.__dict__.setdefault("_controlnets", {})
        if reference not in loaded:
            loaded[reference] = load_unet_controlnet(reference, self.model.family, self.unet, self.device, self.dtype)
        return loaded[reference]

    def control_source(self, reference: str, rgb: np.ndarray) -> tuple[torch.Tensor, int]:
        """What a ControlNet's crops are cut from: the picture itself, (3, H, W) float32 in [0, 1] on the device,
        at `latent_factor` canvas pixels per latent pixel of a window."""
        picture = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).float() / 255.0
        return picture.contiguous(), self.latent_factor  # contiguous: crops read it as runs of its storage

    def control_residuals(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, controls: Sequence[ControlInput],
                          added: dict | None = None) -> dict:
        """The UNet's extra keyword arguments: each ControlNet's down and mid residuals, scaled per item, summed."""
        if not controls:
            return {}
        down, mid = None, None
        for control in controls:
            d, m = self.controlnet(control.model)(
                x, t, encoder_hidden_states=text, controlnet_cond=control.image.to(self.dtype),
                added_cond_kwargs=added, return_dict=False,
            )
            scale = control.scale.to(self.dtype).view(-1, 1, 1, 1)
            d, m = [r * scale for r in d], m * scale
            down = d if down is None else [a + b for a, b in zip(down, d)]
            mid = m if mid is None else mid + m
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}

