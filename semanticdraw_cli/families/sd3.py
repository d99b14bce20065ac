"""Stable Diffusion 3 adapter: MMDiT transformer with flow matching, three text encoders, 16-channel VAE.

Flow matching keeps x = (1 − σ)·x0 + σ·eps and predicts the velocity v = eps − x0, so the canvas form is
a = 1 − σ, s = σ and x0 = x − σ·v; Euler's step is then the sampler's deterministic re-noise with the
predicted eps. Masks quantize against σ/sqrt(1 + σ²), the noise level SemanticDraw uses for SD3.
`model.drop_t5` loads no T5 encoder and feeds zeros in its place, as the pipeline does with
text_encoder_3=None.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import loading, presets, schedules
from semanticdraw_cli.families.base import AcceleratorDefaults, FamilySpec
from semanticdraw_cli.families.codec import CodecMixin, VaeCodec, needs_vae_upcast
from semanticdraw_cli.families.conditioning import clip_embeddings
from semanticdraw_cli.families.controlnet_dit import SD3Control
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

T5_TOKENS = 256  # the pipeline's default max_sequence_length
NO_T5_HINT = "set model.drop_t5: true (--set model.drop_t5=true) to render with the two CLIP encoders only"


def load_pipeline(model: Model, dtype: torch.dtype, device: torch.device | None = None):
    """A diffusers StableDiffusion3Pipeline (without T5 when model.drop_t5) with its accelerator fused."""
    from diffusers import StableDiffusion3Pipeline

    kwargs = {"text_encoder_3": None, "tokenizer_3": None} if model.drop_t5 else {}
    require = {} if model.drop_t5 else {"text_encoder_3": NO_T5_HINT}
    pipe, preset_dir = loading.load_family_pipeline(
        StableDiffusion3Pipeline, model, "sd3", dtype, require=require, device=device, **kwargs
    )
    source = model.checkpoint
    if type(pipe.transformer).__name__ != "SD3Transformer2DModel":
        raise RenderError(f"{source!r} has no SD3 transformer; set model.family to match the checkpoint")
    for encoder, tokenizer in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
        if getattr(pipe, encoder) is None or getattr(pipe, tokenizer) is None:
            raise RenderError(f"{source!r} has no {encoder}/{tokenizer}; SD3 needs both CLIP text encoders")
    if not model.drop_t5 and (pipe.text_encoder_3 is None or pipe.tokenizer_3 is None):
        raise RenderError(f"{source!r} has no T5 text encoder (text_encoder_3/tokenizer_3)\nwhat to do: {NO_T5_HINT}")
    loading.fuse_accelerator(pipe, model.accelerator, preset_dir, "sd3", component="transformer")
    return pipe


class SD3Adapter(CodecMixin, NetworkMixin, SD3Control, Predictor):
    """SD3 behind the family contract."""

    cfg_guidance = True
    parameterization = "flow"
    network_attribute = "transformer"

    def __init__(self, pipe, model: Model, device: torch.device, dtype: torch.dtype):
        loading.place(pipe, model.offload, device)
        self.transformer = pipe.transformer.eval()
        self.text_encoders = [pipe.text_encoder.eval(), pipe.text_encoder_2.eval()]
        self.tokenizers = [pipe.tokenizer, pipe.tokenizer_2]
        self.t5 = pipe.text_encoder_3.eval() if pipe.text_encoder_3 is not None else None
        self.t5_tokenizer = pipe.tokenizer_3
        self.scheduler_config = dict(pipe.scheduler.config)
        self.scheduler = schedules.scheduler_kind(model, type(pipe.scheduler).__name__)
        self.model = model
        self.device, self.dtype = device, dtype
        self.latent_channels = self.transformer.config.in_channels
        self.patch = self.transformer.config.patch_size
        vae = pipe.vae.eval()
        self.codec = VaeCodec(
            vae,
            device,
            dtype,
            vae.config.scaling_factor,
            shift=vae.config.shift_factor or 0.0,
            upcast=needs_vae_upcast(vae, dtype),
        )

    def step_table(self, sampler: Sampler, canvas: Canvas) -> StepTable:
        """Sigmas `sampler.steps` of a `sampler.grid`-step flow-matching Euler schedule (shifted as configured)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        if self.scheduler != "flow-euler":
            raise RenderError(f"the sd3 family samples with flow-euler only, not {self.scheduler!r}")
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(self.scheduler_config)
        if scheduler.config.get("use_dynamic_shifting"):  # resolution-dependent shift: the window the model sees
            from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

            tokens = schedules.window_tokens(sampler, canvas, self.latent_factor * self.patch)
            config = scheduler.config
            mu = calculate_shift(
                tokens,
                config.get("base_image_seq_len", 256),
                config.get("max_image_seq_len", 4096),
                config.get("base_shift", 0.5),
                config.get("max_shift", 1.16),
            )
            scheduler.set_timesteps(sampler.grid, mu=mu)
        else:
            scheduler.set_timesteps(sampler.grid)
        sigmas = [float(scheduler.sigmas[i]) for i in sampler.steps] + [0.0]
        return StepTable(
            timesteps=tuple(float(scheduler.timesteps[i]) for i in sampler.steps),
            signal=tuple(1.0 - sigma for sigma in sigmas),
            noise=tuple(sigmas),
            mask_levels=tuple(sigma / (1.0 + sigma**2) ** 0.5 for sigma in sigmas[:-1]) + (0.0,),
            stochastic=False,
        )

    @inference_mode
    def encode_text(self, texts: Sequence[str]) -> Embeddings:
        """text (B, 77 + 256, D_joint): both CLIPs' penultimate states (zero-padded) then T5's (or zeros);
        pooled (B, P1 + P2): both CLIPs' projections."""
        hidden, pooled = zip(*(
            clip_embeddings(tokenizer, encoder, texts, self.device)
            for tokenizer, encoder in zip(self.tokenizers, self.text_encoders)
        ))
        clip = torch.cat(hidden, dim=-1)  # (B, 77, D1 + D2)
        joint = self.transformer.config.joint_attention_dim
        if self.t5 is None:
            t5 = torch.zeros(len(texts), T5_TOKENS, joint, device=self.device, dtype=clip.dtype)
        else:
            ids = self.t5_tokenizer(
                list(texts), padding="max_length", max_length=T5_TOKENS, truncation=True,
                add_special_tokens=True, return_tensors="pt",
            ).input_ids
            t5 = self.t5(ids.to(self.device))[0].to(clip.dtype)
        clip = torch.nn.functional.pad(clip, (0, joint - clip.shape[-1]))
        return {"text": torch.cat([clip, t5], dim=-2), "pooled": torch.cat(pooled, dim=-1)}

    @inference_mode
    def network_output(
        self, x: torch.Tensor, table: StepTable, step: int, context: Embeddings, guidance: torch.Tensor,
        windows: Sequence[Window], controls: Sequence[ControlInput] = (),
    ) -> torch.Tensor:
        """The MMDiT's velocity eps − x0 of (B, 16, h, w) latents x = (1 − σ)·x0 + σ·eps, with the block samples
        of the call's ControlNets."""
        if x.shape[-2] % self.patch or x.shape[-1] % self.patch:
            side = self.latent_factor * self.patch
            raise RenderError(
                f"SD3 sees the latent in {self.patch}×{self.patch} patches: a window of "
                f"{x.shape[-1] * self.latent_factor}×{x.shape[-2] * self.latent_factor} px does not divide; "
                f"make the canvas and sampler.tile size/stride multiples of {side} px"
            )
        t = torch.full((len(x),), table.timesteps[step], device=self.device)
        return self.transformer(
            hidden_states=x.to(self.dtype),
            timestep=t,
            encoder_hidden_states=context["text"].to(self.dtype),
            pooled_projections=context["pooled"].to(self.dtype),
            **self.control_blocks(controls, x.to(self.dtype), t, context),
            return_dict=False,
        )[0].float()


def load(model: Model, device: torch.device, dtype: torch.dtype) -> SD3Adapter:
    return SD3Adapter(load_pipeline(model, dtype, device), model, device, dtype)


# --- the tiny preset: SD3's layout (2 CLIP + T5, MMDiT, 16-channel VAE with shift) at toy width -----------

TINY_CLIP = 32  # hidden = projection width of each CLIP encoder
TINY_JOINT = 80  # T5 width = joint_attention_dim; wider than the two CLIPs (64) so the padding is exercised
TINY_HEADS, TINY_HEAD_DIM = 2, 16


MMDIT_PROJECTIONS = (*presets.ATTENTION_PROJECTIONS, "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


def build_preset(name: str, folder: Path) -> None:
    """An SD3-layout pipeline with seeded random weights and a random `flash` LoRA."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from diffusers import StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

    vocab = presets.write_clip_tokenizer(folder / "tokenizer")
    presets.write_clip_tokenizer(folder / "tokenizer_2")
    presets.write_t5_tokenizer(folder / "tokenizer_3")
    t5_tokenizer = T5Tokenizer.from_pretrained(folder / "tokenizer_3")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED)
        transformer = SD3Transformer2DModel(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=TINY_HEAD_DIM,
            num_attention_heads=TINY_HEADS,
            joint_attention_dim=TINY_JOINT,
            caption_projection_dim=TINY_HEADS * TINY_HEAD_DIM,
            pooled_projection_dim=2 * TINY_CLIP,
            pos_embed_max_size=192,  # SD3's: windows up to 192 patches, 3072 px
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
            scaling_factor=1.5305,  # SD3's
            shift_factor=0.0609,
            use_quant_conv=False,
            use_post_quant_conv=False,
            mid_block_add_attention=False,
        )
        clip = [
            CLIPTextModelWithProjection(presets.clip_text_config(vocab, TINY_CLIP, 2, 2, projection=TINY_CLIP))
            for _ in range(2)
        ]
        t5 = T5EncoderModel(
            T5Config(
                vocab_size=len(t5_tokenizer),
                d_model=TINY_JOINT,
                d_kv=16,
                d_ff=64,
                num_layers=1,
                num_heads=2,
                relative_attention_num_buckets=8,
                feed_forward_proj="gated-gelu",
            )
        )
        pipe = StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),  # SD3 medium's
            vae=vae,
            text_encoder=clip[0],
            tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
            text_encoder_2=clip[1],
            tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
            text_encoder_3=t5,
            tokenizer_3=t5_tokenizer,
        )
        pipe.save_pretrained(folder)
        for accelerator in SPEC.accelerators:  # a random LoRA under each name
            presets.save_random_lora(
                pipe.transformer, folder / "accelerators" / accelerator, StableDiffusion3Pipeline, "transformer",
                MMDIT_PROJECTIONS,
            )



# --- full-random: SD3 medium's real networks with random weights, built on the GPU (7.69 B parameters) -------

FULL_TRANSFORMER = dict(  # stabilityai/stable-diffusion-3-medium-diffusers transformer/config.json (2.03 B)
    sample_size=128,
    patch_size=2,
    in_channels=16,
    out_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    joint_attention_dim=4096,
    caption_projection_dim=1536,
    pooled_projection_dim=2048,
    pos_embed_max_size=192,
)


def build_on_device(name: str, device: torch.device, dtype: torch.dtype, skip: frozenset[str]) -> dict:
    """SD3 medium's MMDiT, CLIP L, OpenCLIP bigG, T5-XXL (unless skipped) and VAE at full size on `device`."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTokenizer, T5Tokenizer

    tokenizer = presets.loaded_tokenizer(CLIPTokenizer, presets.write_clip_tokenizer)
    parts = {"tokenizer": tokenizer, "tokenizer_2": tokenizer,
             "scheduler": FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)}
    if "text_encoder_3" not in skip:
        parts["tokenizer_3"] = presets.loaded_tokenizer(T5Tokenizer, presets.write_t5_tokenizer)
    with presets.random_on(device, dtype):
        parts |= {
            "transformer": SD3Transformer2DModel(**FULL_TRANSFORMER),
            "text_encoder": presets.clip_l(len(tokenizer), projection=True),
            "text_encoder_2": presets.clip_big_g(len(tokenizer)),
            "vae": AutoencoderKL(**presets.FULL_VAE, latent_channels=16, scaling_factor=1.5305, shift_factor=0.0609,
                                 use_quant_conv=False, use_post_quant_conv=False),
        }
        if "text_encoder_3" not in skip:
            parts["text_encoder_3"] = presets.t5_xxl()
    return parts


SPEC = FamilySpec(
    name="sd3",
    pipeline_class="StableDiffusion3Pipeline",
    components=("transformer", "text_encoder", "text_encoder_2", "text_encoder_3"),
    checkpoint="stabilityai/stable-diffusion-3-medium-diffusers",
    tiny_autoencoder="madebyollin/taesd3",  # TAESD for model.preview_decoder: tiny-ae
    accelerator="flash",
    accelerators={"flash": AcceleratorDefaults("jasperai/flash-sd3", None, "flow-euler")},
    tile_size=1024,
    tile_stride=512,
    own_scheduler_steps=4,
    own_scheduler_grid=4,
    own_scheduler="flow-euler",
    schedulers=("flow-euler",),
    load=load,
    build_preset=build_preset,
    presets=("tiny", "full-random"),
    pixel_multiple=16,
    options=("drop_t5",),
    device_presets=("full-random",),
    build_on_device=build_on_device,
    control_class="SD3ControlNetModel",
)
