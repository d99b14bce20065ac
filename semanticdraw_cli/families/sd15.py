"""Stable Diffusion 1.5: loading, prompt encoding, x0 prediction, step tables and the built-in presets.

The only module that knows SD1.5; the renderer sees it through `FamilyAdapter`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import ip_adapter, loading, presets, schedules
from semanticdraw_cli.families.base import AcceleratorDefaults, FamilySpec
from semanticdraw_cli.families.codec import CodecMixin, VaeCodec
from semanticdraw_cli.families.conditioning import timestep
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


def load_pipeline(model: Model, dtype: torch.dtype, family: str = "sd15"):
    """A diffusers StableDiffusionPipeline with its accelerator LoRA fused; `family`: whose presets and LoRAs."""
    from diffusers import StableDiffusionPipeline

    pipe, preset_dir = loading.load_family_pipeline(
        StableDiffusionPipeline, model, family, dtype, safety_checker=None, requires_safety_checker=False
    )
    if getattr(pipe.unet.config, "addition_embed_type", None) == "text_time":
        raise RenderError(f"{model.checkpoint!r} is an SDXL checkpoint; set model.family: sdxl")
    loading.fuse_accelerator(pipe, model.accelerator, preset_dir, family)
    return pipe


class SD15Adapter(CodecMixin, NetworkMixin, UNetControl, Predictor):
    """SD1.5 behind the family contract: an epsilon or v-prediction UNet, as its scheduler config says. LCM
    predicts x0 with its boundary condition."""

    cfg_guidance = True

    def __init__(self, pipe, model: Model, device: torch.device, dtype: torch.dtype):
        loading.place(pipe, model.offload, device)
        self.pipe = pipe  # an IP-Adapter loads into it (families.ip_adapter)
        self.unet = pipe.unet.eval()
        self.text_encoder = pipe.text_encoder.eval()
        self.tokenizer = pipe.tokenizer
        self.scheduler_config = dict(pipe.scheduler.config)
        self.parameterization = scheduler_parameterization(self.scheduler_config, model.checkpoint)
        self.model = model
        self.device, self.dtype = device, dtype
        self.latent_channels = self.unet.config.in_channels
        self.codec = VaeCodec(pipe.vae.eval(), device, dtype, pipe.vae.config.scaling_factor)
        self.scheduler = schedules.scheduler_kind(model, type(pipe.scheduler).__name__)
        self.boundary = schedules.LcmBoundary(self.scheduler_config) if self.scheduler == "lcm" else None

    def step_table(self, sampler: Sampler, canvas: Canvas) -> StepTable:
        """Timesteps `sampler.steps` of a `sampler.grid`-step schedule of the model's scheduler kind."""
        return schedules.discrete_step_table(self.scheduler, self.scheduler_config, sampler)

    @inference_mode
    def encode_text(self, texts: Sequence[str]) -> Embeddings:
        """One embedding per text, (B, 77, D)."""
        tokens = self.tokenizer(
            list(texts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        hidden = self.text_encoder(tokens.input_ids.to(self.device))[0]
        return {"text": hidden}

    @inference_mode
    def network_output(
        self, x: torch.Tensor, table: StepTable, step: int, context: Embeddings, guidance: torch.Tensor,
        windows: Sequence[Window], controls: Sequence[ControlInput] = (),
    ) -> torch.Tensor:
        """The UNet's eps or v of (B, C, h, w) latents, with the residuals of the call's ControlNets; with an
        IP-Adapter, each item's picture at its weight."""
        t = timestep(table.timesteps[step], self.device)
        x, text = x.to(self.dtype), context["text"].to(self.dtype)
        added = ip_adapter.unet_inputs(self, context, x.shape[0]) or None
        residuals = self.control_residuals(x, t, text, controls)
        return self.unet(x, t, encoder_hidden_states=text, added_cond_kwargs=added, **residuals).sample.float()


def load(model: Model, device: torch.device, dtype: torch.dtype) -> SD15Adapter:
    return SD15Adapter(load_pipeline(model, dtype), model, device, dtype)


# --- presets: the SD1.5 layout with seeded random weights -------------------------------------------

SD15_SIZES = {
    # name: (unet channels, layers per block, attention heads, text width, text layers, vae channels, vae mid attention)
    "tiny": ((32, 32, 64), 1, 2, 32, 2, (8, 16, 16, 16), False),
    "small": ((64, 128, 256, 256), 2, 8, 256, 4, (32, 64, 128, 128), True),
    "full-random": ((320, 640, 1280, 1280), 2, 8, 768, 12, (128, 256, 512, 512), True),
}


def build_preset(name: str, folder: Path) -> None:
    """An SD1.5-layout pipeline (and its LCM accelerator LoRA) with seeded random weights."""
    from diffusers import StableDiffusionPipeline

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED)
        pipe = build_pipeline(name, folder, presets.sd_scheduler())
        pipe.save_pretrained(folder)
        presets.mark_unclipped_schedule(folder / "scheduler" / "scheduler_config.json")
        presets.save_random_lora(pipe.unet, folder / "accelerators" / "lcm", StableDiffusionPipeline)


def build_pipeline(name: str, folder: Path, scheduler):
    """An SD1.5-layout StableDiffusionPipeline of random weights from the global generator (its tokenizer
    written to `folder`), sampling with `scheduler`."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    unet_channels, layers, heads, text_width, text_layers, vae_channels, vae_attention = SD15_SIZES[name]
    vocab = presets.write_clip_tokenizer(folder / "tokenizer")
    depth = len(unet_channels)
    if name == "tiny":  # attention only at the lowest resolution keeps CPU tests fast
        down = ("DownBlock2D",) * (depth - 1) + ("CrossAttnDownBlock2D",)
        up = ("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (depth - 1)
    else:  # the SD1.5 layout
        down = ("CrossAttnDownBlock2D",) * (depth - 1) + ("DownBlock2D",)
        up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (depth - 1)
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
    text_encoder = CLIPTextModel(presets.clip_text_config(vocab, text_width, text_layers, max(1, text_width // 64) if name != "tiny" else 2))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipe


SPEC = FamilySpec(
    name="sd15",
    pipeline_class="StableDiffusionPipeline",
    components=("unet", "text_encoder"),
    checkpoint="stable-diffusion-v1-5/stable-diffusion-v1-5",
    tiny_autoencoder="madebyollin/taesd",  # TAESD for model.preview_decoder: tiny-ae
    accelerator="lcm",
    accelerators={
        "lcm": AcceleratorDefaults("latent-consistency/lcm-lora-sdv1-5", None, "lcm"),
    },
    tile_size=768,
    tile_stride=384,
    own_scheduler_steps=(0, 4, 12, 25, 37),
    own_scheduler_grid=50,
    own_scheduler="ddim",
    schedulers=("lcm", "ddim", "euler-trailing"),
    load=load,
    build_preset=build_preset,
    presets=presets.PRESET_NAMES,
    reference_pictures=True,
    control_class="ControlNetModel",
)
