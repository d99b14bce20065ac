"""FLUX.1 adapter: a rectified-flow transformer over packed 2×2 latent patches, CLIP L pooled + T5 text.

The canvas latent stays unpacked, (16, h, w) in the VAE's scaled and shifted space. Each window is packed
into h/2·w/2 tokens of 64 channels with its own image position ids (0, row, col), counted from its top
left: every window is a picture of its own, as SD3's per-window position embedding. Flow matching as in
sd3.py: x = (1 − σ)·x0 + σ·eps, v = eps − x0, so a = 1 − σ, s = σ, x0 = x − σ·v, and masks quantize
against σ/sqrt(1 + σ²). The schedule is FluxPipeline's: sigmas linspace(1, 1/n, n) over the grid, shifted
as the checkpoint's scheduler config says, statically (schnell: shift 1) or by `calculate_shift` of the
window's token count (dev: use_dynamic_shifting). A transformer with `guidance_embeds` (FLUX.1-dev) reads
sampler.guidance as its distilled guidance input and has no unconditional branch; without it (schnell)
guidance > 1 is classifier-free guidance over the negative prompts (the pipeline's true_cfg_scale).
`model.drop_t5` feeds zeros in place of T5's states; `model.text_tokens` caps T5's sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import ip_adapter, loading, presets, schedules
from semanticdraw_cli.families.base import AcceleratorDefaults, FamilySpec
from semanticdraw_cli.families.codec import CodecMixin, VaeCodec, needs_vae_upcast
from semanticdraw_cli.families.controlnet_dit import FluxControl
from semanticdraw_cli.families.network import NetworkMixin
from semanticdraw_cli.families.prediction import Predictor
from semanticdraw_cli.lazy import inference_mode, lazy_module
from semanticdraw_cli.schedule import StepTable

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.families.base import ControlInput, Embeddings
    from semanticdraw_cli.scene.types import Canvas, Model, Sampler
    from semanticdraw_cli.tiles import Window
else:
    torch = lazy_module("torch")

T5_TOKENS = 512  # FluxPipeline's default max_sequence_length; BFL's reference samples schnell with 256
NO_CLIP_HINT = "FLUX needs its CLIP text encoder (text_encoder/tokenizer): use a complete FLUX.1 checkpoint"
NO_T5_HINT = (
    "set model.drop_t5: true (--set model.drop_t5=true) to render without T5; FLUX reads the prompt mostly "
    "through T5, so without it only CLIP's pooled vector steers the picture"
)


def load_pipeline(model: Model, dtype: torch.dtype, device: torch.device | None = None):
    """A diffusers FluxPipeline (without T5 when model.drop_t5) with its accelerator LoRA fused."""
    from diffusers import FluxPipeline

    kwargs = {"text_encoder_2": None, "tokenizer_2": None} if model.drop_t5 else {}
    require = {"text_encoder": NO_CLIP_HINT, "tokenizer": NO_CLIP_HINT}
    require |= {} if model.drop_t5 else {"text_encoder_2": NO_T5_HINT, "tokenizer_2": NO_T5_HINT}
    pipe, preset_dir = loading.load_family_pipeline(
        FluxPipeline, model, "flux", dtype, require=require, device=device, **kwargs
    )
    source = model.checkpoint
    if type(pipe.transformer).__name__ != "FluxTransformer2DModel":
        raise RenderError(f"{source!r} has no FLUX.1 transformer; set model.family to match the checkpoint")
    if pipe.text_encoder is None or pipe.tokenizer is None:
        raise RenderError(f"{source!r} has no CLIP text encoder\nwhat to do: {NO_CLIP_HINT}")
    if not model.drop_t5 and (pipe.text_encoder_2 is None or pipe.tokenizer_2 is None):
        raise RenderError(f"{source!r} has no T5 text encoder (text_encoder_2/tokenizer_2)\nwhat to do: {NO_T5_HINT}")
    loading.fuse_accelerator(pipe, model.accelerator, preset_dir, "flux", component="transformer")
    return pipe


def pack(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2·w/2, 4C): 2×2 patches in FluxPipeline._pack_latents' order."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h/2·w/2, 4C) -> (B, C, h, w), the inverse of `pack`."""
    b, _, d = tokens.shape
    return tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


def image_ids(rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """(rows·cols, 3) position ids (0, row, col) of a window's patches, counted from its own top left."""
    ids = torch.zeros(rows, cols, 3, device=device)
    ids[..., 1] = torch.arange(rows, device=device)[:, None]
    ids[..., 2] = torch.arange(cols, device=device)[None, :]
    return ids.reshape(rows * cols, 3)


def flow_table(scheduler, sampler: Sampler) -> StepTable:
    """The flow-matching step table of `sampler.steps` from a scheduler whose timesteps are set."""
    sigmas = [float(scheduler.sigmas[i]) for i in sampler.steps] + [0.0]  # σ_n = 0: the clean latent
    return StepTable(
        timesteps=tuple(float(scheduler.timesteps[i]) for i in sampler.steps),
        signal=tuple(1.0 - sigma for sigma in sigmas),
        noise=tuple(sigmas),
        mask_levels=tuple(sigma / (1.0 + sigma**2) ** 0.5 for sigma in sigmas[:-1]) + (0.0,),
        stochastic=False,
    )


def set_flow_sigmas(scheduler, grid: int, mu: float) -> None:
    """FLUX pipelines' timesteps: sigmas linspace(1, 1/grid, grid), shifted by the scheduler (mu when dynamic)."""
    import numpy as np

    if scheduler.config.get("use_flow_sigmas"):
        scheduler.set_timesteps(grid, mu=mu)
    else:
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / grid, grid), mu=mu)


class FluxAdapter(CodecMixin, NetworkMixin, FluxControl, Predictor):
    """FLUX.1 behind the family contract."""

    network_attribute = "transformer"
    parameterization = "flow"

    def __init__(self, pipe, model: Model, device: torch.device, dtype: torch.dtype):
        loading.place(pipe, model.offload, device)
        self.pipe, self.model = pipe, model  # an IP-Adapter loads into it (families.ip_adapter)
        self.transformer = pipe.transformer.eval()
        self.clip, self.clip_tokenizer = pipe.text_encoder.eval(), pipe.tokenizer
        self.t5 = pipe.text_encoder_2.eval() if pipe.text_encoder_2 is not None else None
        self.t5_tokenizer = pipe.tokenizer_2
        self.t5_tokens = model.text_tokens or T5_TOKENS
        self.scheduler_config = dict(pipe.scheduler.config)
        self.device, self.dtype = device, dtype
        self.latent_channels = self.transformer.config.in_channels // 4  # 64 packed channels: 16 latent ones
        self.guidance_embeds = bool(self.transformer.config.guidance_embeds)
        self.cfg_guidance = not self.guidance_embeds
        vae = pipe.vae.eval()
        self.codec = VaeCodec(
            vae, device, dtype, vae.config.scaling_factor, shift=vae.config.shift_factor or 0.0,
            upcast=needs_vae_upcast(vae, dtype),
        )

    def step_table(self, sampler: Sampler, canvas: Canvas) -> StepTable:
        """Sigmas `sampler.steps` of FluxPipeline's `sampler.grid`-step schedule for a window-sized picture."""
        from diffusers import FlowMatchEulerDiscreteScheduler
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)
        config = scheduler.config
        tokens = schedules.window_tokens(sampler, canvas, self.latent_factor * 2)  # 2×2 latent patches
        mu = calculate_shift(
            tokens,
            config.get("base_image_seq_len", 256),
            config.get("max_image_seq_len", 4096),
            config.get("base_shift", 0.5),
            config.get("max_shift", 1.15),
        )
        set_flow_sigmas(scheduler, sampler.grid, mu)
        return flow_table(scheduler, sampler)

    @inference_mode
    def encode_text(self, texts: Sequence[str]) -> Embeddings:
        """text (B, text_tokens, D_joint): T5's last hidden states (zeros without T5); pooled (B, 768): CLIP
        L's pooled output, as FluxPipeline.encode_prompt."""
        ids = self.clip_tokenizer(
            list(texts), padding="max_length", max_length=self.clip_tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids
        pooled = self.clip(ids.to(self.device), output_hidden_states=False).pooler_output
        if self.t5 is None:
            width = self.transformer.config.joint_attention_dim
            return {"text": torch.zeros(len(texts), self.t5_tokens, width, device=self.device), "pooled": pooled}
        ids = self.t5_tokenizer(
            list(texts), padding="max_length", max_length=self.t5_tokens, truncation=True, return_tensors="pt"
        ).input_ids
        return {"text": self.t5(ids.to(self.device), output_hidden_states=False)[0], "pooled": pooled}

    @inference_mode
    def network_output(
        self, x: torch.Tensor, table: StepTable, step: int, context: Embeddings, guidance: torch.Tensor,
        windows: Sequence[Window], controls: Sequence[ControlInput] = (),
    ) -> torch.Tensor:
        """The transformer's velocity eps − x0 of (B, 16, h, w) latents x = (1 − σ)·x0 + σ·eps, packed and
        unpacked around the call; a guidance-distilled one reads each item's `guidance`. The call's ControlNets
        read the same inputs (FluxControlNetPipeline)."""
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            raise RenderError(
                f"FLUX reads the latent in 2×2 patches: a window of {w * self.latent_factor}×"
                f"{h * self.latent_factor} px does not divide; make the canvas and sampler.tile size/stride "
                f"multiples of {2 * self.latent_factor} px"
            )
        n = len(x)
        t = torch.tensor(table.timesteps[step], dtype=torch.float32).to(self.dtype).expand(n).to(self.device) / 1000
        embedded = guidance.to(self.device, torch.float32) if self.guidance_embeds else None
        text = context["text"].to(self.dtype)
        pictures = ip_adapter.image_embeds(self, context, n)  # a region's reference picture, per item
        inputs = dict(
            hidden_states=pack(x).to(self.dtype),
            timestep=t,
            pooled_projections=context["pooled"].to(self.dtype),
            encoder_hidden_states=text,
            txt_ids=torch.zeros(text.shape[1], 3, device=self.device),
            img_ids=image_ids(h // 2, w // 2, self.device),
        )
        control = self.control_samples(controls, inputs, guidance)  # the ControlNets see no reference picture
        attention = None if pictures is None else {"ip_adapter_image_embeds": pictures}
        v = self.transformer(**inputs, guidance=embedded, **control, joint_attention_kwargs=attention,
                             return_dict=False)[0].float()
        return unpack(v, h, w)


def load(model: Model, device: torch.device, dtype: torch.dtype) -> FluxAdapter:
    return FluxAdapter(load_pipeline(model, dtype, device), model, device, dtype)


# --- presets: FLUX.1-schnell's layout, at toy width (tiny) or full size on a GPU (full-random) --------------

TINY_CLIP, TINY_T5 = 32, 48  # CLIP width = pooled_projection_dim; T5 width = joint_attention_dim
FULL_TRANSFORMER = dict(  # black-forest-labs/FLUX.1-schnell transformer/config.json (11.9 B parameters)
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=False,
    axes_dims_rope=(16, 56, 56),
)
VAE_FACTORS = dict(scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)


def schnell_scheduler():
    """FLUX.1-schnell's scheduler config: static shift 1.0 (dev's: shift 3.0 with use_dynamic_shifting)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)


def build_preset(name: str, folder: Path) -> None:
    """A FLUX.1-schnell-layout pipeline (one double and one single block) with seeded random weights."""
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

    vocab = presets.write_clip_tokenizer(folder / "tokenizer")
    presets.write_t5_tokenizer(folder / "tokenizer_2")
    t5_tokenizer = T5TokenizerFast.from_pretrained(folder / "tokenizer_2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED)
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=TINY_T5, pooled_projection_dim=TINY_CLIP,
            guidance_embeds=False, axes_dims_rope=(4, 6, 6),
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 16, 16),
            layers_per_block=1,
            latent_channels=16,
            norm_num_groups=4,
            sample_size=1024,
            mid_block_add_attention=False,
            **VAE_FACTORS,
        )
        t5 = T5EncoderModel(T5Config(
            vocab_size=len(t5_tokenizer), d_model=TINY_T5, d_kv=16, d_ff=64, num_layers=1, num_heads=2,
            relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
        ))
        pipe = FluxPipeline(
            scheduler=schnell_scheduler(),
            vae=vae,
            text_encoder=CLIPTextModel(presets.clip_text_config(vocab, TINY_CLIP, 2, 2)),
            tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
            text_encoder_2=t5,
            tokenizer_2=t5_tokenizer,
            transformer=transformer,
        )
        pipe.save_pretrained(folder)


def build_on_device(name: str, device: torch.device, dtype: torch.dtype, skip: frozenset[str]) -> dict:
    """FLUX.1-schnell's transformer, CLIP L, T5-XXL (unless skipped) and VAE at full size on `device`."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTokenizer, T5TokenizerFast

    tokenizer = presets.loaded_tokenizer(CLIPTokenizer, presets.write_clip_tokenizer)
    parts = {"tokenizer": tokenizer, "scheduler": schnell_scheduler()}
    if "text_encoder_2" not in skip:
        parts["tokenizer_2"] = presets.loaded_tokenizer(T5TokenizerFast, presets.write_t5_tokenizer)
    with presets.random_on(device, dtype):
        parts |= {
            "transformer": FluxTransformer2DModel(**FULL_TRANSFORMER),
            "text_encoder": presets.clip_l(len(tokenizer)),
            "vae": AutoencoderKL(**presets.FULL_VAE, latent_channels=16, **VAE_FACTORS),
        }
        if "text_encoder_2" not in skip:
            parts["text_encoder_2"] = presets.t5_xxl()
    return parts


SPEC = FamilySpec(
    name="flux",
    pipeline_class="FluxPipeline",
    components=("transformer", "text_encoder", "text_encoder_2"),
    checkpoint="black-forest-labs/FLUX.1-schnell",
    tiny_autoencoder="madebyollin/taef1",  # TAESD for model.preview_decoder: tiny-ae
    accelerator="schnell",
    # schnell is timestep-distilled in its own weights (no LoRA): 4 steps, no guidance
    accelerators={"schnell": AcceleratorDefaults(None, None, "flow-euler")},
    tile_size=1024,
    tile_stride=512,
    own_scheduler_steps=28,  # `accelerator: none` (FLUX.1-dev: with sampler.guidance 3.5) or a custom LoRA
    own_scheduler_grid=28,
    own_scheduler="flow-euler",
    schedulers=("flow-euler",),
    load=load,
    build_preset=build_preset,
    presets=("tiny", "full-random"),
    pixel_multiple=16,
    options=("drop_t5", "text_tokens"),
    device_presets=("full-random",),
    build_on_device=build_on_device,
    cuda_dtype="bfloat16",
    reference_pictures=True,
    control_class="FluxControlNetModel",
)
