"""What every family adapter shares: checkpoint resolution, accelerator LoRAs, the VAE codec, devices."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families.hub import load_error
from semanticdraw_cli.scene import Accelerator

VAE_TILING_PIXELS = 1024 * 1024  # decode with the VAE's own tiling above this many pixels
TileCallback = Callable[[int, int], None]  # (decoder passes done, passes in all)


def quiet_libraries() -> None:
    """Silence diffusers/transformers chatter (loading bars, benign LoRA notes); we report progress ourselves."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def device_problem(requested: str | None) -> str | None:
    """Why the `requested` device (cpu, mps, cuda, cuda:N; None/auto) cannot be used here; None when it can."""
    if requested is None or requested in ("auto", "cpu"):
        return None
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            return "CUDA is not available here; use --device cpu"
        index, count = int(requested.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= count:
            return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    if requested == "mps" and not mps_available():
        return "MPS (Apple GPU) is not available here; use --device cpu"
    return None


def pick_device(requested: str | None) -> torch.device:
    """`auto`/None: cuda, then mps, then cpu."""
    if requested and requested != "auto":
        problem = device_problem(requested)
        if problem:
            raise RenderError(f"device {requested!r}: {problem}")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps_available():
        return torch.device("mps")
    return torch.device("cpu")


DTYPES = {name: getattr(torch, name) for name in defaults.DTYPES}


def pick_dtype(requested: str | None, device: torch.device) -> torch.dtype:
    """`auto`/None: float16 on cuda, float32 elsewhere."""
    if requested and requested != "auto":
        if requested not in DTYPES:
            raise RenderError(f"unknown dtype {requested!r}; expected one of {', '.join(DTYPES)} or auto")
        return DTYPES[requested]
    return torch.float16 if device.type == "cuda" else torch.float32


# Which family a diffusers folder holds, from its model_index.json: first the pipeline class, then its parts.
PIPELINE_FAMILIES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3",
}


def checkpoint_config(source: str) -> dict | None:
    """model_index.json of a diffusers folder or cached hub id; None when there is none to read."""
    from diffusers import DiffusionPipeline

    try:
        return dict(DiffusionPipeline.load_config(source))
    except Exception:  # not a diffusers folder, not cached offline: the loader reports it properly
        return None


def checkpoint_family(config: dict, source: str = "") -> str | None:
    """sd15 | sdxl | sd3 from a model_index.json; None when it is none of them."""
    name = config.get("_class_name", "")
    if not isinstance(name, str):
        raise RenderError(
            f"{source or 'the checkpoint'}: model_index.json has _class_name {str(name)[:60]}, not a pipeline class name\n"
            "what to do: point to a diffusers folder whose model_index.json names its pipeline, e.g. "
            '"_class_name": "StableDiffusionPipeline"'
        )
    if name in PIPELINE_FAMILIES:
        return PIPELINE_FAMILIES[name]
    if "transformer" in config and "text_encoder_3" in config:
        return "sd3"
    if "unet" in config and "text_encoder_2" in config:
        return "sdxl"
    if "unet" in config and "text_encoder" in config:
        return "sd15"
    return None


def refuse_other_family(target: str, family: str, source: str | None = None) -> dict | None:
    """The model_index.json at `target` (None when unreadable); RenderError when it holds another family."""
    config = checkpoint_config(target)
    found = checkpoint_family(config, source or target) if config else None
    if found is not None and found != family:
        raise RenderError(
            f"{source or target!r} is an {found} checkpoint, but model.family is {family}; set model.family: {found}"
        )
    return config


def load_family_pipeline(pipeline_class, model, family: str, dtype: torch.dtype, require=None, **kwargs):
    """(pipeline, preset folder or None) from a preset, hub id, local folder or one .safetensors file.

    A diffusers folder of another family, or one without a component named in `require` (name -> what
    to do), is refused before any weight is read.
    """
    from semanticdraw_cli.families import presets

    quiet_libraries()
    source = model.checkpoint
    preset_dir = presets.ensure_preset(family, source) if presets.is_preset(source) else None
    target = str(preset_dir or source)
    single_file = source.endswith((".safetensors", ".ckpt"))
    config = None if single_file else refuse_other_family(target, family, source)
    for component, hint in (require or {}).items():
        entry = config.get(component) if config else None
        if config and not (isinstance(entry, list) and entry and entry[0] is not None):
            raise RenderError(f"{source!r} has no {component}\nwhat to do: {hint}")
    try:
        if single_file:
            if not Path(source).is_file():
                raise FileNotFoundError(f"no such file: {source}")
            pipe = pipeline_class.from_single_file(source, dtype=dtype, **kwargs)
        else:
            pipe = pipeline_class.from_pretrained(target, dtype=dtype, **kwargs)
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        raise load_error("model", source, error) from error
    return pipe, preset_dir


def clip_embeddings(tokenizer, encoder, texts, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate hidden states (B, 77, D), pooled output (B, P)) of one CLIP encoder, as SDXL and SD3 use them."""
    ids = tokenizer(
        list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    out = encoder(ids.to(device), output_hidden_states=True)
    return out.hidden_states[-2], out[0]


def needs_vae_upcast(vae, dtype: torch.dtype) -> bool:
    """The SDXL VAE overflows in float16 (black/NaN images); its config says so with force_upcast."""
    return dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))


def resolve_lora(accelerator: Accelerator, preset_dir: Path | None) -> tuple[str, str | None] | None:
    """(source, weight_name) of the accelerator LoRA; presets carry their own random-weight copy."""
    if accelerator.name == "none" or accelerator.lora is None:
        return None
    if preset_dir is not None and accelerator.name != "lora":
        local = preset_dir / "accelerators" / accelerator.name
        if not local.is_dir():
            raise RenderError(f"the preset at {preset_dir} has no {accelerator.name!r} accelerator")
        return str(local), None
    return accelerator.lora, accelerator.weight_name


def read_peft_adapter(source: str, component: str) -> dict[str, torch.Tensor] | None:
    """A PEFT adapter (adapter_config.json + adapter_model.safetensors, e.g. jasperai/flash-sd3) as a
    diffusers LoRA state dict for the pipeline's `component`, lora_alpha/r folded into lora_B; None when
    `source` is not one (or, offline, not cached: the ordinary loader then says what is missing)."""
    import json

    from safetensors.torch import load_file

    folder = Path(source)
    try:
        if folder.is_dir():
            config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
            if not config_file.is_file():
                return None
        elif not folder.exists() and source.count("/") == 1:  # a hub id
            from huggingface_hub import hf_hub_download

            config_file = Path(hf_hub_download(source, "adapter_config.json"))
            weights_file = Path(hf_hub_download(source, "adapter_model.safetensors"))
        else:
            return None
    except Exception:  # not a PEFT repo, or not reachable
        return None
    config = json.loads(config_file.read_text())
    rank, alpha = config.get("r", 1), config.get("lora_alpha", config.get("r", 1))
    scale = alpha / rank**0.5 if config.get("use_rslora") else alpha / rank
    state = {}
    for key, value in load_file(weights_file).items():
        key = component + "." + key.removeprefix("base_model.model.")
        state[key] = value * scale if ".lora_B." in key else value
    return state


def fuse_accelerator(
    pipe, accelerator: Accelerator, preset_dir: Path | None, family: str, component: str | None = None
) -> None:
    """Load the accelerator LoRA, fuse it into the weights (no LoRA cost per step), drop the adapter.

    With `component` (the pipeline part it adapts), a LoRA saved in PEFT's own format is read too.
    """
    lora = resolve_lora(accelerator, preset_dir)
    if lora is None:
        return
    source, weight_name = lora
    kwargs = {"weight_name": weight_name} if weight_name else {}
    peft_state = read_peft_adapter(source, component) if component and not weight_name else None
    try:
        pipe.load_lora_weights(peft_state if peft_state is not None else source, adapter_name="accelerator", **kwargs)
    except (OSError, pickle.UnpicklingError) as error:
        raise load_error("accelerator LoRA", source, error, weight_name) from error
    except (ValueError, KeyError, RuntimeError) as error:
        raise RenderError(
            f"the LoRA {source!r} does not fit a {family} model: {str(error).splitlines()[0]}\n"
            f"what to do: use a LoRA trained for {family}, or set model.accelerator to one made for it"
        ) from error
    adapters = {name for names in pipe.get_list_adapters().values() for name in names}
    if "accelerator" not in adapters:  # no key of the LoRA matched a module of this model
        raise RenderError(
            f"the LoRA {source!r} does not fit a {family} model: none of its weights match the model's layers\n"
            f"what to do: use a LoRA trained for {family}, or set model.accelerator to one made for it"
        )
    pipe.fuse_lora(lora_scale=accelerator.weight, adapter_names=["accelerator"])
    pipe.unload_lora_weights()


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

    def _vae_dtype(self) -> torch.dtype:
        dtype = torch.float32 if self.upcast else self.dtype
        if self.vae.dtype != dtype:
            self.vae.to(dtype=dtype)
        return dtype

    @torch.inference_mode()
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

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, on_tile: TileCallback | None = None) -> np.ndarray:
        """(N, C, h, w) latents -> (N, H, W, 3) uint8; tiled decoding for large canvases.

        `on_tile(done, total)` is called after each decoder pass (one per tile, or one per image untiled).
        """
        height, width = latents.shape[-2] * 8, latents.shape[-1] * 8
        tiled = height * width > VAE_TILING_PIXELS
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
    """Pixels <-> latents for an adapter holding a `codec` (VaeCodec)."""

    codec: VaeCodec

    def encode_image(self, rgb: np.ndarray) -> torch.Tensor:
        return self.codec.encode(rgb)

    def white_latent(self) -> torch.Tensor:
        return self.codec.white()

    def decode(self, latents: torch.Tensor, on_tile: TileCallback | None = None) -> np.ndarray:
        return self.codec.decode(latents, on_tile)


def guidance_batch(x: torch.Tensor, cond: dict, uncond: dict | None) -> tuple[torch.Tensor, dict]:
    """Model inputs and embeddings; with an unconditional branch the batch is [uncond..., cond...]."""
    if uncond is None:
        return x, cond
    return torch.cat([x, x]), {key: torch.cat([uncond[key], cond[key]]) for key in cond}


def apply_guidance(out: torch.Tensor, guided: bool, guidance: float) -> torch.Tensor:
    """Classifier-free guidance over a [uncond..., cond...] batch: u + g·(c − u)."""
    if not guided:
        return out
    out_uncond, out_cond = out.chunk(2)
    return out_uncond + guidance * (out_cond - out_uncond)
