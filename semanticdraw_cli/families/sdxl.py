"""Stable Diffusion XL adapter: two CLIP encoders, pooled and size conditioning, Euler with trailing timesteps
(or LCM / DDIM where the accelerator asks for them).

Euler is deterministic and, seen through `scale_model_input`, is DDIM in variance-preserving form:
x_vp = x_euler / sqrt(σ² + 1) = a·x0 + s·eps with a = 1/sqrt(1 + σ²), s = σ/sqrt(1 + σ²). The canvas
is kept as x_vp, so the UNet input is the canvas itself and the sampler reuses the predicted eps.

Size conditioning: each window is told original = target = its own pixel size, crop (0, 0), which is
what `StableDiffusionXLPipeline` passes for a canvas of that size. Every window is a whole, uncropped
picture to the model; a crop offset would ask for subjects cut at the window border, the opposite of
what mask-centering bootstrapping wants.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import ip_adapter, loading, presets, schedules
from semanticdraw_cli.families.base import AcceleratorDefaults, FamilySpec
from semanticdraw_cli.families.codec import CodecMixin, VaeCodec, needs_vae_upcast
from semanticdraw_cli.families.conditioning import clip_embeddings, timestep
from semanticdraw_cli.families.controlnet import UNetControl
from semanticdraw_cli.families.network import NetworkMixin
from semanticdraw_cli.families.prediction import Predictor, scheduler_parameterization
from semanticdraw_cli.lazy import inference_mode, lazy_module
from semanticdraw_cli.schedule import StepTable

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.families.base import ControlInput, Embeddings
    from semanticdraw_cli.scene.types import Canvas, Model, Sampler
    from semanticdraw_cli.tiles import Window
else:
    torch = lazy_module("torch")



def load_pipeline(model: Model, dtype: torch.dtype, device: torch.device | None = None):
    """A diffusers StableDiffusionXLPipeline with its accelerator LoRA fused."""
    from diffusers import StableDiffusionXLPipeline

    pipe, preset_dir = loading.load_family_pipeline(StableDiffusionXLPipeline, model, "sdxl", dtype, device=device)
    source = model.checkpoint
    unet = pipe.unet
    if getattr(unet.config, "addition_embed_type", None) != "text_time":
        raise RenderError(f"{source!r} is not an SDXL checkpoint (no size conditioning); set model.family: sd15")
    if pipe.text_encoder is None or pipe.tokenizer is None:
        raise RenderError(
            f"{source!r} has no first text encoder (text_encoder/tokenizer); SDXL needs both CLIP encoders "
            "(a refiner checkpoint cannot render on its own): use an SDXL base checkpoint"
        )
    if pipe.text_encoder_2 is None or pipe.tokenizer_2 is None:
        raise RenderError(f"{source!r} has no second text encoder (text_encoder_2/tokenizer_2); SDXL needs both")
    loading.fuse_accelerator(pipe, model.accelerator, preset_dir, "sdxl")
    return pipe


class SDXLAdapter(CodecMixin, NetworkMixin, UNetControl, Predictor):
    """SDXL behind the family contract."""

    cfg_guidance = True

    def __init__(self, pipe, model: Model, device: torch.device, dtype: torch.dtype):
        loading.place(pipe, model.offload, device)
        self.pipe = pipe  # an IP-Adapter loads into it (families.ip_adapter)
        self.unet = pipe.unet.eval()
        self.text_encoder = pipe.text_encoder.eval()
        self.text_encoder_2 = pipe.text_encoder_2.eval()
        self.tokenizer, self.tokenizer_2 = pipe.tokenizer, pipe.tokenizer_2
        self.scheduler_config = dict(pipe.scheduler.config)
        self.zero_empty = bool(pipe.config.get("force_zeros_for_empty_prompt", False))
        self.parameterization = scheduler_parameterization(self.scheduler_config, model.checkpoint)
        self.model = model
        self.device, self.dtype = device, dtype
        self.latent_channels = self.unet.config.in_channels
        self._time_ids: dict[tuple, torch.Tensor] = {}  # window sizes -> (B, 6) on the device
        vae = pipe.vae.eval()
        self.codec = VaeCodec(
            vae, device, dtype, vae.config.scaling_factor, upcast=needs_vae_upcast(vae, dtype)
        )
        self.scheduler = schedules.scheduler_kind(model, type(pipe.scheduler).__name__)
        self.boundary = schedules.LcmBoundary(self.scheduler_config) if self.scheduler == "lcm" else None

    def step_table(self, sampler: Sampler, canvas: Canvas) -> StepTable:
        """Steps `sampler.steps` of a `sampler.grid`-step schedule of the model's scheduler kind."""
        return schedules.discrete_step_table(self.scheduler, self.scheduler_config, sampler)

    @inference_mode
    def encode_text(self, texts: Sequence[str]) -> Embeddings:
        """text (B, 77, D1 + D2): both encoders' penultimate states; pooled (B, P): the second's projection.

        An empty text is all zeros where the checkpoint asks for it (force_zeros_for_empty_prompt), as
        the pipeline does for a missing negative prompt.
        """
        hidden_1, _ = clip_embeddings(self.tokenizer, self.text_encoder, texts, self.device)
        hidden_2, pooled = clip_embeddings(self.tokenizer_2, self.text_encoder_2, texts, self.device)
        text = torch.cat([hidden_1, hidden_2], dim=-1)
        if self.zero_empty:
            empty = torch.tensor([t == "" for t in texts], device=self.device)
            text = torch.where(empty[:, None, None], torch.zeros_like(text), text)
            pooled = torch.where(empty[:, None], torch.zeros_like(pooled), pooled)
        return {"text": text, "pooled": pooled}

    def time_ids(self, windows: Sequence[Window]) -> torch.Tensor:
        """(B, 6): original size, crop top-left, target size in pixels; a whole picture of the window's size.

        Kept per list of window sizes: copying them to the device again would be a host sync per call."""
        sizes = tuple((w.height * self.latent_factor, w.width * self.latent_factor) for w in windows)
        if sizes not in self._time_ids:
            rows = [[height, width, 0, 0, height, width] for height, width in sizes]
            self._time_ids[sizes] = torch.tensor(rows, dtype=torch.float32, device=self.device)
        return self._time_ids[sizes]

    @inference_mode
    def network_output(
        self, x: torch.Tensor, table: StepTable, step: int, context: Embeddings, guidance: torch.Tensor,
        windows: Sequence[Window], controls: Sequence[ControlInput] = (),
    ) -> torch.Tensor:
        """The UNet's eps or v of (B, C, h, w) VP latents (exactly Euler's scaled model input), each item sized
        as its window, with the residuals of the call's ControlNets."""
        added = {"text_embeds": context["pooled"].to(self.dtype), "time_ids": self.time_ids(windows).to(self.dtype)}
        added.update(ip_adapter.unet_inputs(self, context, x.shape[0]))
        x, t, text = x.to(self.dtype), timestep(table.timesteps[step], self.device), context["text"].to(self.dtype)
        residuals = self.control_residuals(x, t, text, controls, added)
        return self.unet(x, t, encoder_hidden_states=text, added_cond_kwargs=added, **residuals).sample.float()


def load(model: Model, device: torch.device, dtype: torch.dtype) -> SDXLAdapter:
    return SDXLAdapter(load_pipeline(model, dtype, device), model, device, dtype)


# --- the tiny preset: SDXL's layout (two CLIP encoders, text_time conditioning) at toy width --------------

TINY_TEXT = (32, 32)  # hidden width of text_encoder, text_encoder_2 (its projection is as wide)
TINY_TIME_DIM = 8  # addition_time_embed_dim


def sdxl_scheduler():
    """SDXL base's scheduler config (Euler, leading spacing: the adapter asks for trailing)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )


def build_preset(name: str, folder: Path) -> None:
    """An SDXL-layout pipeline with seeded random weights and random `lightning` / `hyper` LoRAs."""
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab = presets.write_clip_tokenizer(folder / "tokenizer")
    presets.write_clip_tokenizer(folder / "tokenizer_2")
    width_1, width_2 = TINY_TEXT
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED)
        unet = UNet2DConditionModel(
            sample_size=128,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 32, 64),
            down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),  # attention at 1/4 only
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            cross_attention_dim=width_1 + width_2,
            attention_head_dim=(2, 2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=TINY_TIME_DIM,
            projection_class_embeddings_input_dim=TINY_TIME_DIM * 6 + width_2,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=1024,
            scaling_factor=0.13025,  # SDXL's
            force_upcast=True,
            mid_block_add_attention=False,
        )
        text_encoder = CLIPTextModel(presets.clip_text_config(vocab, width_1, 2, 2))
        text_encoder_2 = CLIPTextModelWithProjection(presets.clip_text_config(vocab, width_2, 2, 2, projection=width_2))
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
            tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
            unet=unet,
            scheduler=sdxl_scheduler(),
            force_zeros_for_empty_prompt=True,
        )
        pipe.save_pretrained(folder)
        for accelerator in SPEC.accelerators:  # a random LoRA under each name
            presets.save_random_lora(pipe.unet, folder / "accelerators" / accelerator, StableDiffusionXLPipeline)



# --- full-random: SDXL base's real networks with random weights, built on the GPU (3.47 B parameters) --------

FULL_UNET = dict(  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (2.57 B parameters)
    sample_size=128,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)


def build_on_device(name: str, device: torch.device, dtype: torch.dtype, skip: frozenset[str]) -> dict:
    """SDXL base's UNet, CLIP L, OpenCLIP bigG and VAE at full size with seeded random weights on `device`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTokenizer

    tokenizer = presets.loaded_tokenizer(CLIPTokenizer, presets.write_clip_tokenizer)
    with presets.random_on(device, dtype):
        networks = {
            "unet": UNet2DConditionModel(**FULL_UNET),
            "text_encoder": presets.clip_l(len(tokenizer)),
            "text_encoder_2": presets.clip_big_g(len(tokenizer)),
            "vae": AutoencoderKL(**presets.FULL_VAE, latent_channels=4, scaling_factor=0.13025, force_upcast=True),
        }
    return {**networks, "tokenizer": tokenizer, "tokenizer_2": tokenizer, "scheduler": sdxl_scheduler()}


SPEC = FamilySpec(
    name="sdxl",
    pipeline_class="StableDiffusionXLPipeline",
    components=("unet", "text_encoder", "text_encoder_2"),
    checkpoint="stabilityai/stable-diffusion-xl-base-1.0",
    tiny_autoencoder="madebyollin/taesdxl",  # TAESD for model.preview_decoder: tiny-ae
    accelerator="lightning",
    accelerators={
        "lightning": AcceleratorDefaults("ByteDance/SDXL-Lightning", "sdxl_lightning_4step_lora.safetensors", "euler-trailing"),
        "hyper": AcceleratorDefaults("ByteDance/Hyper-SD", "Hyper-SDXL-4steps-lora.safetensors", "euler-trailing"),
    },
    tile_size=1024,
    tile_stride=512,
    own_scheduler_steps=4,
    own_scheduler_grid=4,
    own_scheduler="euler-trailing",
    schedulers=("euler-trailing", "lcm", "ddim"),
    load=load,
    build_preset=build_preset,
    presets=("tiny", "full-random"),
    device_presets=("full-random",),
    build_on_device=build_on_device,
    reference_pictures=True,
    control_class="ControlNetModel",
)
