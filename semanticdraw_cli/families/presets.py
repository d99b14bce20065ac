"""Built-in model presets: real diffusers/transformers classes with seeded random weights, built locally.

Nothing is downloaded: each family's `build_preset` writes configs, a generated tokenizer vocabulary
and seeded random weights with `save_pretrained` into a cache folder, which then loads like any real
checkpoint. This module holds what the builders share and the cache. `tiny` keeps tests fast,
`small` keeps the SD1.5 UNet layout at reduced width for CPU benchmarks, `full-random` is the real
architecture (the real model's compute) for GPU timing: written to disk for SD1.5, built straight on the
GPU for the families that list it in `FamilySpec.device_presets` (`random_on`, `pipeline_on_device`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

from semanticdraw_cli.defaults import PRESET_NAMES

PRESET_VERSION = 2
SEED = 0
MAX_TEXT_LENGTH = 77
BUILD_DEVICES = ("cuda",)  # where `device_presets` are built: real-size models need a GPU's memory and speed


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


def clip_text_config(
    vocab_size: int, hidden: int, layers: int, heads: int, projection: int | None = None, rows: int | None = None,
    act: str = "quick_gelu",
):
    """A CLIP text encoder for our tokenizer of `vocab_size` tokens; `rows`: the embedding table (a real model's 49408)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=rows or max(vocab_size, 1000),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=MAX_TEXT_LENGTH,
        projection_dim=projection or hidden,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_act=act,
    )


def loaded_tokenizer(tokenizer_class, write) -> object:
    """A tokenizer written by `write(folder)` into a temporary folder and loaded from it (nothing stays on disk)."""
    with tempfile.TemporaryDirectory() as folder:
        write(Path(folder))
        return tokenizer_class.from_pretrained(folder)


@contextmanager
def random_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Networks constructed inside are allocated on `device` in `dtype` with seeded random weights.

    On a GPU this builds a real-size model in seconds without a copy in CPU memory or on disk; on the
    meta device it allocates nothing (parameter counts for free).
    """
    previous = torch.get_default_dtype()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(SEED)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)


def pipeline_on_device(spec, pipeline_class, name: str, device: torch.device | None, dtype: torch.dtype, **kwargs):
    """A preset of `spec.device_presets` (the real architecture, random weights), built on the GPU in `dtype`.

    Components passed as None in `kwargs` (e.g. text_encoder_3 without T5) are not built. Accelerator LoRAs
    are not applied: fused into random weights they change no cost (`built_on_device` tells the loader).
    """
    if device is None or device.type not in BUILD_DEVICES:
        where = device.type if device is not None else "this device"
        raise RenderError(
            f"the {name} {spec.name} preset is the real architecture with random weights, built straight on a CUDA GPU "
            f"and never written to disk; there is no GPU here ({where})\n"
            "what to do: render with --device cuda on a machine with a GPU, or use --model tiny"
        )
    skip = frozenset(key for key, value in kwargs.items() if value is None)
    pipe = pipeline_class(**spec.build_on_device(name, device, dtype, skip), **kwargs)
    pipe.built_on_device = True
    return pipe


# The real networks that several families share, for `full-random` presets built with `random_on`.
FULL_VAE = dict(  # the SD / SDXL / SD3 / FLUX.1 autoencoder layout (83.7 M parameters)
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    norm_num_groups=32,
    sample_size=1024,
)
CLIP_ROWS = 49408  # CLIP's vocabulary size: the real embedding table (our tokenizer uses its first rows)


def clip_l(vocab_size: int, projection: bool = False):
    """OpenAI CLIP ViT-L/14's text encoder (123 M parameters), with or without its projection."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    config = clip_text_config(vocab_size, 768, 12, 12, projection=768, rows=CLIP_ROWS)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def clip_big_g(vocab_size: int):
    """OpenCLIP ViT-bigG/14's text encoder with projection (695 M parameters), SDXL's and SD3's second encoder."""
    from transformers import CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(clip_text_config(vocab_size, 1280, 32, 20, projection=1280, rows=CLIP_ROWS, act="gelu"))


def t5_xxl():
    """T5 v1.1 XXL's encoder (4.76 B parameters), SD3's and FLUX's third text encoder."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
        relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
    ))


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
    """Whether the preset is in the cache, whole (else the first use builds it, which takes a while)."""
    return not missing_parts(preset_folder(family, name))


def ensure_preset(family: str, name: str) -> Path:
    """A family preset's folder, built on first use by the family's `build_preset`."""
    from semanticdraw_cli.families.registry import family as family_spec

    if is_built(family, name):
        return preset_folder(family, name)
    spec = family_spec(family)
    if name in spec.device_presets:
        raise RenderError(f"the {name} {family} preset is built on a GPU when it loads and has no folder")
    if name not in spec.presets:
        have = f"only the {spec.presets[0]!r} preset" if len(spec.presets) == 1 else "the presets " + ", ".join(spec.presets)
        raise RenderError(f"the {family} family has {have}, not {name!r}")
    return build_cached(preset_folder(family, name), lambda staging: spec.build_preset(name, staging))


COMPLETE = "semanticdraw-complete.json"  # written last into a whole build: which entry, which version
WEIGHTS = ("*.safetensors", "*.bin")


def build_cached(folder: Path, build: Callable[[Path], None], marker: str = "model_index.json") -> Path:
    """`folder`, built once by `build(staging)` and published whole.

    One process builds at a time (a lock file beside the folder; others wait, then use its build), into
    a private temporary folder that is checked whole (`missing_parts`), marked complete (COMPLETE,
    written last) and renamed into place, so no reader ever sees a part. An entry without the mark or
    with a part missing (a killed build of an older version) is moved aside and built again. `marker`
    is a file a whole build holds (a diffusers pipeline's model_index.json by default).
    """
    if not missing_parts(folder, marker):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(folder):
        if not missing_parts(folder, marker):  # built by the process that held the lock before
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            with _every_rank_writes():
                build(staging)
            if missing := [part for part in missing_parts(staging, marker) if part != COMPLETE]:
                raise RenderError(f"building {folder.name} left out {', '.join(missing)}; nothing was written to "
                                  f"{folder.parent}\nwhat to do: report this with the versions of diffusers and transformers")
            (staging / COMPLETE).write_text(json.dumps({"entry": folder.name, "version": PRESET_VERSION}) + "\n")
            os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the cache is shared like any folder
            if folder.exists():
                aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
                folder.rename(aside / "incomplete")
            staging.rename(folder)
        finally:  # the staging folder, the entry moved aside, what killed builders left: none is in use
            for temporary in folder.parent.glob(f".{folder.name}-*"):
                shutil.rmtree(temporary, ignore_errors=True)
    return folder


def missing_parts(folder: Path, marker: str = "model_index.json") -> list[str]:
    """What a whole build holds that `folder` lacks: the COMPLETE mark, `marker`, each component that
    model_index.json names (a folder with files), and the weights of every folder with a model config."""
    missing = [name for name in (COMPLETE, marker) if not (folder / name).is_file()]
    if not folder.is_dir():
        return missing
    parts = [folder]
    if (folder / "model_index.json").is_file():
        index = json.loads((folder / "model_index.json").read_text())
        named = [key for key, value in index.items() if isinstance(value, list) and value and value[0] is not None]
        parts += [folder / key for key in named]
    parts += [lora for lora in folder.glob("accelerators/*") if lora.is_dir()]
    for part in parts:
        files = [entry.name for entry in part.iterdir()] if part.is_dir() else []
        has_weights = any(next(part.glob(pattern), None) for pattern in WEIGHTS)
        if not files or ("config.json" in files and not has_weights):
            missing.append(f"{part.relative_to(folder)}/" + ("" if not files else " (weights)"))
    return missing


@contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `.NAME.lock` beside `folder`, released when the process ends however it ends."""
    import fcntl

    with open(folder.parent / f".{folder.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _every_rank_writes() -> Iterator[None]:
    """transformers' `save_pretrained` writes a model's weights only on rank 0 of an initialized process
    group. In a launch any process may be the one that builds a preset, so while it does, every process
    writes (`missing_parts` would catch a library that found another way to skip them)."""
    from transformers import PreTrainedModel

    name = "should_save_on_this_rank"  # transformers 5: rank 0 only when torch.distributed is initialized
    if not hasattr(PreTrainedModel, name):
        yield
        return
    own = PreTrainedModel.__dict__.get(name)  # None: inherited (from DistributedMixin)
    setattr(PreTrainedModel, name, lambda self, is_main_process: is_main_process)
    try:
        yield
    finally:
        if own is None:
            delattr(PreTrainedModel, name)
        else:
            setattr(PreTrainedModel, name, own)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
