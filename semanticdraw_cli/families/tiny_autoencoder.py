"""The tiny autoencoders (TAESD, diffusers' `AutoencoderTiny`) that decode previews: which one a scene's
`model.preview_decoder` means, the random-weight presets, and loading one (architecture.md §7).

`tiny-ae` is the family's own TAESD (`FamilySpec.tiny_autoencoder`, a hub id); with a random preset
checkpoint it is a random-weight AutoencoderTiny of the family's latent channels, built here into the
preset cache, so tests need no hub. A TAESD decoder reads the latents the network samples: its config
says scaling 1 and shift 0, and diffusers' pipelines decode with any autoencoder as
`decode(latents / scaling_factor + shift_factor)` from its own config, which is what `codec.VaeCodec`
does with the tiny autoencoder's values. Final images never pass through one.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.defaults import TINY_AE
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import presets
from semanticdraw_cli.families.hub import hub_command, load_error, readable_source, refused_pickle, why_offline
from semanticdraw_cli.families.registry import family as family_spec
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.scene.types import Model
else:
    torch = lazy_module("torch")

# Preset checkpoint -> its tiny autoencoder's (channels per block, blocks per stage); None: AutoencoderTiny's
# defaults, TAESD's own architecture. `small` is a quarter of TAESD's width, as the small VAE is of SD's.
PRESET_SIZES = {"tiny": ((8, 8, 8, 8), (1, 1, 1, 1)), "small": ((16, 16, 16, 16), None), "full-random": None}
AUTOENCODER_CLASS = "AutoencoderTiny"


def preset_folder(family: str, name: str) -> Path:
    return presets.cache_root() / "presets" / f"{family}-tiny-ae-{name}-v{presets.PRESET_VERSION}"


def ensure_preset(family: str, name: str, latent_channels: int) -> Path:
    """The folder of a preset checkpoint's random tiny autoencoder (config.json and weights), built on first use."""
    return presets.build_cached(preset_folder(family, name), lambda staging: build_preset(name, latent_channels, staging),
                                marker="config.json")


def build_preset(name: str, latent_channels: int, folder: Path) -> None:
    """A seeded random-weight AutoencoderTiny for the latents of `latent_channels` channels, saved with save_pretrained."""
    from diffusers import AutoencoderTiny

    size = PRESET_SIZES[name]
    layout = {}
    if size is not None:
        channels, blocks = size
        layout = dict(encoder_block_out_channels=channels, decoder_block_out_channels=channels)
        if blocks is not None:
            layout.update(num_encoder_blocks=blocks, num_decoder_blocks=blocks)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED + 2)
        AutoencoderTiny(latent_channels=latent_channels, **layout).save_pretrained(folder)


def load(model: Model, latent_channels: int, device: torch.device, dtype: torch.dtype):
    """The AutoencoderTiny of `model.preview_decoder` on the device; RenderError (exit 1, with what to do) when it
    cannot be read, is no AutoencoderTiny or decodes latents of another channel count."""
    from diffusers import AutoencoderTiny

    spec, reference = family_spec(model.family), model.preview_decoder
    if spec.tiny_autoencoder is None:
        raise RenderError(f"the {model.family} family has no tiny autoencoder for its latents\n"
                          "what to do: remove model.preview_decoder (previews then decode with the full VAE)")
    if reference == TINY_AE and presets.is_preset(model.checkpoint):
        source = target = str(ensure_preset(model.family, model.checkpoint, latent_channels))
    else:
        source = spec.tiny_autoencoder if reference == TINY_AE else reference
        try:
            target = readable_source(source)
        except FileNotFoundError as error:
            raise _unreadable(source, error) from error
    try:
        config = AutoencoderTiny.load_config(target)
    except (OSError, ValueError) as error:
        raise _unreadable(source, error) from error
    if config.get("_class_name") != AUTOENCODER_CLASS or config.get("latent_channels", 4) != latent_channels:
        raise RenderError(
            f"the preview decoder {source!r} is a {config.get('_class_name')} of {config.get('latent_channels')} latent "
            f"channels, not an {AUTOENCODER_CLASS} for the {latent_channels}-channel latents of {model.family}\n"
            f"what to do: use model.preview_decoder: {TINY_AE} ({spec.tiny_autoencoder}) or a TAESD made for "
            f"{model.family}"
        )
    try:
        decoder = AutoencoderTiny.from_pretrained(target, torch_dtype=dtype)
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        raise _unreadable(source, error) from error
    return decoder.to(device).eval()


def _unreadable(source: str, error: Exception) -> RenderError:
    """What to do about a decoder that cannot be read: a local folder says what it should hold; a hub id that is
    not cached while nothing can be downloaded says how to get it or do without it; else `hub.load_error`."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if refused_pickle(error) is None and (os.path.isabs(source) or os.path.exists(source)):
        return RenderError(f"cannot load the preview decoder {source!r}: {first}\n"
                           f"what to do: check that {source} is an {AUTOENCODER_CLASS} folder (config.json and weights)")
    offline = why_offline() if refused_pickle(error) is None else None
    if offline is None:
        return load_error("preview decoder", source, error)
    return RenderError(f"cannot load the preview decoder {source!r}: {first}\nwhat to do: {offline}, so nothing is "
                       f"downloaded: download it once with network access (`{hub_command()} download {source}`), name "
                       "a local AutoencoderTiny folder, or remove model.preview_decoder (previews then decode with the "
                       "full VAE)")
