"""Built-in model presets: real diffusers/transformers classes with seeded random weights, built locally.

Nothing is downloaded: each family's `build_preset` writes configs, a generated tokenizer vocabulary
and seeded random weights with `save_pretrained` into a cache folder, which then loads like any real
checkpoint. This module holds what the builders share and the cache. `tiny` keeps tests fast,
`small` keeps the SD1.5 UNet layout at reduced width for CPU benchmarks, `full-random` is the real
SD1.5 architecture (the real model's compute) for GPU timing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

PRESET_NAMES = ("tiny", "small", "full-random")
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


def write_t5_tokenizer(folder: Path) -> None:
    """A T5 tokenizer (Unigram over single characters, built with `tokenizers`): no sentencepiece needed."""
    import string

    from transformers import T5Tokenizer

    chars = string.ascii_letters + string.digits + string.punctuation
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("▁" + c, -2.5) for c in chars]
    T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512).save_pretrained(folder)


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


def preset_folder(family: str, name: str) -> Path:
    return cache_root() / "presets" / f"{family}-{name}-v{PRESET_VERSION}"


def is_built(family: str, name: str) -> bool:
    """Whether the preset is in the cache already (else the first use builds it, which takes a while)."""
    return (preset_folder(family, name) / "model_index.json").exists()


def ensure_preset(family: str, name: str) -> Path:
    """The preset's folder, built on first use (atomically: a temporary folder, then a rename)."""
    from semanticdraw_cli.families.registry import family as family_spec

    folder = preset_folder(family, name)
    if is_built(family, name):
        return folder
    spec = family_spec(family)
    if name not in spec.presets:
        have = f"only the {spec.presets[0]!r} preset" if len(spec.presets) == 1 else "the presets " + ", ".join(spec.presets)
        raise RenderError(f"the {family} family has {have}, not {name!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        spec.build_preset(name, staging)
        try:
            staging.rename(folder)
        except OSError:  # another process finished first
            if not (folder / "model_index.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
