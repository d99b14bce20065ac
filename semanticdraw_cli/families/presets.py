"""Built-in model presets: real diffusers/transformers classes with seeded random weights, built locally.

Nothing is downloaded: configs are written here, the CLIP tokenizer vocabulary is generated, and the
result is saved with `save_pretrained` into a cache folder, then loaded like any real checkpoint.
`tiny` keeps tests fast, `small` keeps the SD1.5 UNet layout at reduced width for CPU benchmarks,
`full-random` is the real SD1.5 architecture (the real model's compute) for GPU timing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from semanticdraw_cli.defaults import PRESET_NAMES

PRESET_VERSION = 2
SEED = 0
MAX_TEXT_LENGTH = 77


def cache_root() -> Path:
    """$SEMANTICDRAW_CACHE, else ~/.cache/semanticdraw."""
    return Path(os.environ.get("SEMANTICDRAW_CACHE") or Path.home() / ".cache" / "semanticdraw")


def is_preset(checkpoint: str) -> bool:
    return checkpoint in PRESET_NAMES


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


def write_clip_tokenizer(folder: Path) -> int:
    """A CLIP BPE tokenizer over single characters (no merges); returns the vocabulary size."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_TEXT_LENGTH).save_pretrained(folder)
    return len(tokens)


def clip_text_config(vocab_size: int, hidden: int, layers: int, heads: int, projection: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=max(vocab_size, 1000),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=MAX_TEXT_LENGTH,
        projection_dim=projection or hidden,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_act="quick_gelu",
    )


def sd_scheduler():
    """The noise schedule of SD1.5/SDXL (scaled-linear betas), as their checkpoints ship it."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        skip_prk_steps=True,
        set_alpha_to_one=False,
    )


SD15_SIZES = {
    # name: (unet channels, layers per block, attention heads, text width, text layers, vae channels, vae mid attention)
    "tiny": ((32, 32, 64), 1, 2, 32, 2, (8, 16, 16, 16), False),
    "small": ((64, 128, 256, 256), 2, 8, 256, 4, (32, 64, 128, 128), True),
    "full-random": ((320, 640, 1280, 1280), 2, 8, 768, 12, (128, 256, 512, 512), True),
}


def build_sd15(name: str, folder: Path) -> None:
    """An SD1.5-layout pipeline (and its LCM accelerator LoRA) with seeded random weights."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    unet_channels, layers, heads, text_width, text_layers, vae_channels, vae_attention = SD15_SIZES[name]
    vocab = write_clip_tokenizer(folder / "tokenizer")
    depth = len(unet_channels)
    if name == "tiny":  # attention only at the lowest resolution keeps CPU tests fast
        down = ("DownBlock2D",) * (depth - 1) + ("CrossAttnDownBlock2D",)
        up = ("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (depth - 1)
    else:  # the SD1.5 layout
        down = ("CrossAttnDownBlock2D",) * (depth - 1) + ("DownBlock2D",)
        up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (depth - 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            layers_per_block=layers,
            block_out_channels=unet_channels,
            down_block_types=down,
            up_block_types=up,
            cross_attention_dim=text_width,
            attention_head_dim=heads,
            norm_num_groups=min(32, unet_channels[0] // 4 if name == "tiny" else 32),
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=vae_channels,
            layers_per_block=1 if name == "tiny" else 2,
            latent_channels=4,
            norm_num_groups=min(32, vae_channels[0] // 2 if name == "tiny" else 32),
            sample_size=512,
            mid_block_add_attention=vae_attention,
        )
        text_encoder = CLIPTextModel(clip_text_config(vocab, text_width, text_layers, max(1, text_width // 64) if name != "tiny" else 2))
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
            unet=unet,
            scheduler=sd_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(folder)
        mark_unclipped_schedule(folder / "scheduler" / "scheduler_config.json")
        save_random_lora(pipe.unet, folder / "accelerators" / "lcm", StableDiffusionPipeline)


def mark_unclipped_schedule(config_file: Path) -> None:
    """Real SD checkpoints' scheduler configs say clip_sample: false; DDIM built from ours must agree."""
    config = json.loads(config_file.read_text())
    config["clip_sample"] = False
    config_file.write_text(json.dumps(config, indent=2))


ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def save_random_lora(
    model,
    folder: Path,
    pipeline_class,
    component: str = "unet",
    targets: tuple[str, ...] = ATTENTION_PROJECTIONS,
    rank: int = 4,
    scale: float = 0.02,
) -> None:
    """A random-weight LoRA over `targets` of `model` (the pipeline's `component`), saved as diffusers LoRA weights."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(targets)))
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "lora_" in param_name:
                param.normal_(0.0, scale)
    layers = get_peft_model_state_dict(model)
    folder.mkdir(parents=True, exist_ok=True)
    pipeline_class.save_lora_weights(folder, **{f"{component}_lora_layers": layers}, safe_serialization=True)
    model.delete_adapters(model.active_adapters())


BUILDERS: dict[str, Callable[[str, Path], None]] = {"sd15": build_sd15}


def register(family: str, builder: Callable[[str, Path], None]) -> None:
    """Family adapters add their preset builders here."""
    BUILDERS[family] = builder


def preset_folder(family: str, name: str) -> Path:
    return cache_root() / "presets" / f"{family}-{name}-v{PRESET_VERSION}"


def is_built(family: str, name: str) -> bool:
    """Whether the preset is in the cache already (else the first use builds it, which takes a while)."""
    return (preset_folder(family, name) / "model_index.json").exists()


def ensure_preset(family: str, name: str) -> Path:
    """The preset's folder, built on first use (atomically: a temporary folder, then a rename)."""
    folder = preset_folder(family, name)
    if is_built(family, name):
        return folder
    if family not in BUILDERS:
        from semanticdraw_cli.errors import RenderError

        raise RenderError(f"no built-in presets for family {family!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        BUILDERS[family](name, staging)
        try:
            staging.rename(folder)
        except OSError:  # another process finished first
            if not (folder / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
