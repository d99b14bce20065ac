"""FLUX.2 [klein] adapter: FLUX.2's transformer with a Qwen3 text encoder, steps distilled into its weights.

The canvas latent is the one Flux2KleinPipeline samples in: the VAE's 32 channels folded into 2×2
patches (128 channels at 1/16 of the canvas side) and batch-normalised with the VAE's running
statistics, so noise is N(0, 1) there and each latent pixel is one transformer token. Every window is
its own picture: its tokens get position ids (0, row, col, 0) from its own top left. Flow matching in
a/s form as in flux.py; the schedule is the pipeline's: sigmas linspace(1, 1/n, n) over the grid,
shifted by `compute_empirical_mu` of the window's token count and the grid. The step-distilled
checkpoints (`is_distilled`, e.g. FLUX.2-klein-4B) ignore sampler.guidance, as the pipeline does; the
base ones take classifier-free guidance over the negative prompts. Prompts are Qwen3's hidden states of
layers 9, 18 and 27 side by side, over `model.text_tokens` tokens (512 by default) of the chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import loading, presets, schedules
from semanticdraw_cli.families.base import AcceleratorDefaults, FamilySpec
from semanticdraw_cli.families.codec import NO_WRAP, VAE_TILING_PIXELS, CodecMixin, TileCallback, circular_padding
from semanticdraw_cli.families.network import NetworkMixin
from semanticdraw_cli.families.prediction import Predictor
from semanticdraw_cli.families.flux import flow_table, set_flow_sigmas
from semanticdraw_cli.lazy import inference_mode, lazy_module
from semanticdraw_cli.schedule import StepTable

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.families.base import Embeddings
    from semanticdraw_cli.scene.types import Canvas, Model, Sampler
    from semanticdraw_cli.tiles import Window
else:
    torch = lazy_module("torch")

TEXT_TOKENS = 512  # Flux2KleinPipeline's default max_sequence_length
TEXT_LAYERS = (9, 18, 27)  # the Qwen3 hidden states the pipeline reads (text_encoder_out_layers)
NO_TEXT_HINT = "FLUX.2 [klein] needs its Qwen3 text encoder and tokenizer: use a complete FLUX.2 [klein] checkpoint"


def load_pipeline(model: Model, dtype: torch.dtype, device: torch.device | None = None):
    """A diffusers Flux2KleinPipeline with its accelerator LoRA (if any) fused."""
    from diffusers import Flux2KleinPipeline

    require = {"text_encoder": NO_TEXT_HINT, "tokenizer": NO_TEXT_HINT}
    pipe, preset_dir = loading.load_family_pipeline(
        Flux2KleinPipeline, model, "klein", dtype, require=require, device=device
    )
    source = model.checkpoint
    if type(pipe.transformer).__name__ != "Flux2Transformer2DModel":
        raise RenderError(f"{source!r} has no FLUX.2 transformer; set model.family to match the checkpoint")
    if pipe.text_encoder is None or pipe.tokenizer is None:
        raise RenderError(f"{source!r} has no text encoder\nwhat to do: {NO_TEXT_HINT}")
    if len(TEXT_LAYERS) * pipe.text_encoder.config.hidden_size != pipe.transformer.config.joint_attention_dim:
        raise RenderError(f"{source!r}: its text encoder does not fit its transformer; use a FLUX.2 [klein] checkpoint")
    loading.fuse_accelerator(pipe, model.accelerator, preset_dir, "klein", component="transformer")
    return pipe


def patchify(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 4C, h/2, w/2): Flux2KleinPipeline._patchify_latents."""
    b, c, h, w = z.shape
    return z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)


def unpatchify(z: torch.Tensor) -> torch.Tensor:
    """(B, 4C, h, w) -> (B, C, 2h, 2w), the inverse of `patchify`."""
    b, c, h, w = z.shape
    return z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, h * 2, w * 2)


def position_ids(rows: int, cols: int, tokens: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(image ids (rows·cols, 4) = (0, row, col, 0) from the window's top left, text ids (tokens, 4) = (0, 0, 0, l))."""
    zero = torch.zeros(1, dtype=torch.long)
    image = torch.cartesian_prod(zero, torch.arange(rows), torch.arange(cols), zero)
    text = torch.cartesian_prod(zero, zero, zero, torch.arange(tokens))
    return image.to(device), text.to(device)


@dataclass
class KleinCodec:
    """Pixels <-> the normalised, patchified FLUX.2 latent (128 channels, 1/16 of the side)."""

    vae: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    _white: torch.Tensor | None = field(default=None, repr=False)

    @property
    def factor(self) -> int:
        return 2 * 2 ** (len(self.vae.config.block_out_channels) - 1)  # the VAE's 8, times the 2×2 patches

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.vae.bn
        std = torch.sqrt(bn.running_var.float() + self.vae.config.batch_norm_eps)
        return bn.running_mean.float().view(1, -1, 1, 1).to(self.device), std.view(1, -1, 1, 1).to(self.device)

    @inference_mode
    def encode(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, 128, H/16, W/16) float32 (the distribution's mode, as the pipeline encodes)."""
        pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        self.vae.enable_tiling() if rgb.shape[0] * rgb.shape[1] > VAE_TILING_PIXELS else self.vae.disable_tiling()
        z = self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist.mode().float()
        mean, std = self._stats()
        return (patchify(z) - mean) / std

    def white(self) -> torch.Tensor:
        """(1, 128, 1, 1) latent of a white picture, away from the border; computed once per VAE."""
        if self._white is None:
            latent = self.encode(np.full((128, 128, 3), 255, np.uint8))
            self._white = latent[..., 2:-2, 2:-2].mean(dim=(-2, -1), keepdim=True)
        return self._white

    @inference_mode
    def decode(
        self, latents: torch.Tensor, on_tile: TileCallback | None = None, wrap: tuple[bool, bool] = NO_WRAP
    ) -> np.ndarray:
        """(N, 128, h, w) -> (N, 16h, 16w, 3) uint8; tiled decoding for large canvases, except on a wrapped
        canvas (`wrap`: rows, columns), decoded whole with circular padding; `on_tile` per image."""
        pixels = latents.shape[-2] * latents.shape[-1] * self.factor**2
        self.vae.enable_tiling() if pixels > VAE_TILING_PIXELS and not any(wrap) else self.vae.disable_tiling()
        mean, std = self._stats()
        images = []
        for done, latent in enumerate(latents, start=1):
            z = unpatchify(latent[None].to(self.device).float() * std + mean)
            with circular_padding(self.vae.decoder, wrap):
                image = self.vae.decode(z.to(self.dtype)).sample.float()
            if not torch.isfinite(image).all():
                raise RenderError("the VAE produced NaN/inf pixels; try --dtype float32")
            images.append(((image[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy())
            if on_tile:
                on_tile(done, len(latents))
        return np.stack(images)


class KleinAdapter(CodecMixin, NetworkMixin, Predictor):
    """FLUX.2 [klein] behind the family contract."""

    network_attribute = "transformer"
    parameterization = "flow"

    def __init__(self, pipe, model: Model, device: torch.device, dtype: torch.dtype):
        loading.place(pipe, model.offload, device)
        self.transformer = pipe.transformer.eval()
        self.text_encoder, self.tokenizer = pipe.text_encoder.eval(), pipe.tokenizer
        self.text_tokens = model.text_tokens or TEXT_TOKENS
        self.scheduler_config = dict(pipe.scheduler.config)
        self.device, self.dtype = device, dtype
        self.latent_channels = self.transformer.config.in_channels
        self.cfg_guidance = not pipe.config.get("is_distilled", False)
        self.codec = KleinCodec(pipe.vae.eval(), device, dtype)

    def step_table(self, sampler: Sampler, canvas: Canvas) -> StepTable:
        """Sigmas `sampler.steps` of Flux2KleinPipeline's `sampler.grid`-step schedule for a window-sized picture."""
        from diffusers import FlowMatchEulerDiscreteScheduler
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

        scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)
        tokens = schedules.window_tokens(sampler, canvas, self.latent_factor)  # a token per latent pixel
        set_flow_sigmas(scheduler, sampler.grid, compute_empirical_mu(tokens, sampler.grid))
        return flow_table(scheduler, sampler)

    @inference_mode
    def encode_text(self, texts: Sequence[str]) -> Embeddings:
        """text (B, text_tokens, 3·D): Qwen3's hidden states of TEXT_LAYERS side by side, as the pipeline."""
        chats = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True, enable_thinking=False
            )
            for text in texts
        ]
        tokens = self.tokenizer(
            chats, padding="max_length", truncation=True, max_length=self.text_tokens, return_tensors="pt"
        )
        out = self.text_encoder(
            input_ids=tokens.input_ids.to(self.device), attention_mask=tokens.attention_mask.to(self.device),
            output_hidden_states=True, use_cache=False,
        )
        states = torch.stack([out.hidden_states[k] for k in TEXT_LAYERS], dim=1)  # (B, 3, L, D)
        b, layers, length, width = states.shape
        return {"text": states.permute(0, 2, 1, 3).reshape(b, length, layers * width)}

    @inference_mode
    def network_output(
        self, x: torch.Tensor, table: StepTable, step: int, context: Embeddings, guidance: torch.Tensor,
        windows: Sequence[Window],
    ) -> torch.Tensor:
        """The transformer's velocity eps − x0 of (B, 128, h, w) latents x = (1 − σ)·x0 + σ·eps, one token per
        latent pixel."""
        n, channels, h, w = x.shape
        text = context["text"].to(self.dtype)
        image_ids, text_ids = position_ids(h, w, text.shape[1], self.device)
        t = torch.tensor(table.timesteps[step], dtype=torch.float32).to(self.dtype).expand(n).to(self.device) / 1000
        v = self.transformer(
            hidden_states=x.reshape(n, channels, h * w).permute(0, 2, 1).to(self.dtype),  # (n, h·w, 128)
            timestep=t,
            guidance=None,
            encoder_hidden_states=text,
            txt_ids=text_ids,
            img_ids=image_ids,
            return_dict=False,
        )[0].float()
        return v.permute(0, 2, 1).reshape(n, channels, h, w)


def load(model: Model, device: torch.device, dtype: torch.dtype) -> KleinAdapter:
    return KleinAdapter(load_pipeline(model, dtype, device), model, device, dtype)


# --- the tiny preset: FLUX.2 [klein]'s layout (Qwen3 with 28 layers, FLUX.2 VAE with batch norm) at toy width --

TINY_QWEN = 16  # Qwen3 width; the transformer reads 3 layers side by side: joint_attention_dim 48
CHAT_TEMPLATE = (  # Qwen3's chat layout, as much of it as one user turn without thinking needs
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def write_qwen_tokenizer(folder: Path) -> int:
    """A Qwen2 byte-level BPE tokenizer over single bytes (no merges) with the chat tokens; its vocabulary size."""
    from transformers import Qwen2Tokenizer

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate([*presets.bytes_to_unicode().values(), *special])}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=special[1:], model_max_length=TEXT_TOKENS)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return len(vocab)


def build_preset(name: str, folder: Path) -> None:
    """A FLUX.2 [klein]-layout pipeline (step-distilled) with seeded random weights and batch-norm statistics."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
    from diffusers import Flux2Transformer2DModel
    from transformers import Qwen2TokenizerFast, Qwen3Config, Qwen3ForCausalLM

    vocab = write_qwen_tokenizer(folder / "tokenizer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED)
        text_encoder = Qwen3ForCausalLM(Qwen3Config(
            vocab_size=vocab, hidden_size=TINY_QWEN, intermediate_size=32, num_hidden_layers=max(TEXT_LAYERS) + 1,
            num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=TEXT_TOKENS,
            tie_word_embeddings=True,
        ))
        transformer = Flux2Transformer2DModel(
            patch_size=1, in_channels=128, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=len(TEXT_LAYERS) * TINY_QWEN, timestep_guidance_channels=32,
            axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False,
        )
        vae = AutoencoderKLFlux2(
            block_out_channels=(8, 16, 16, 16), layers_per_block=1, latent_channels=32, norm_num_groups=4,
            mid_block_add_attention=False,
        )
        vae.bn.running_mean.normal_(0.0, 0.1)  # statistics that differ from (0, 1), so normalising is exercised
        vae.bn.running_var.uniform_(0.5, 2.0)
        pipe = Flux2KleinPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(
                num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, time_shift_type="exponential"
            ),
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=Qwen2TokenizerFast.from_pretrained(folder / "tokenizer"),
            transformer=transformer,
            is_distilled=True,
        )
        pipe.save_pretrained(folder)


SPEC = FamilySpec(
    name="klein",
    pipeline_class="Flux2KleinPipeline",
    components=("transformer", "text_encoder", "vae"),
    checkpoint="black-forest-labs/FLUX.2-klein-4B",
    accelerator="klein",
    # the step-distilled klein checkpoints carry their 4 steps in their own weights (no LoRA); guidance is ignored
    accelerators={"klein": AcceleratorDefaults(None, None, "flow-euler")},
    tile_size=1024,
    tile_stride=512,
    own_scheduler_steps=50,  # `accelerator: none`: the klein base checkpoints (with sampler.guidance 4.0)
    own_scheduler_grid=50,
    own_scheduler="flow-euler",
    schedulers=("flow-euler",),
    load=load,
    build_preset=build_preset,
    pixel_multiple=16,
    options=("text_tokens",),
    cuda_dtype="bfloat16",
)
