"""Stable Diffusion 1.5 adapter: loading, prompt encoding, x0 prediction and step tables.

The only module that knows SD1.5; the sampler sees it through `fusion.Denoiser`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import common, schedules
from semanticdraw_cli.fusion import Embeddings, StepTable
from semanticdraw_cli.scene import Model, Sampler
from semanticdraw_cli.tiles import Window


def load_pipeline(model: Model, dtype: torch.dtype):
    """A diffusers StableDiffusionPipeline with its accelerator LoRA fused."""
    from diffusers import StableDiffusionPipeline

    pipe, preset_dir = common.load_family_pipeline(
        StableDiffusionPipeline, model, "sd15", dtype, safety_checker=None, requires_safety_checker=False
    )
    if getattr(pipe.unet.config, "addition_embed_type", None) == "text_time":
        raise RenderError(f"{model.checkpoint!r} is an SDXL checkpoint; set model.family: sdxl")
    common.fuse_accelerator(pipe, model.accelerator, preset_dir, "sd15")
    return pipe


class SD15Denoiser(common.CodecMixin):
    """SD1.5 behind the sampler's narrow interface. LCM predicts x0 with its boundary condition."""

    vae_factor = 8

    def __init__(self, pipe, model: Model, device: torch.device, dtype: torch.dtype):
        self.unet = pipe.unet.to(device).eval()
        self.text_encoder = pipe.text_encoder.to(device).eval()
        self.tokenizer = pipe.tokenizer
        self.scheduler_config = dict(pipe.scheduler.config)
        self.model = model
        self.device, self.dtype = device, dtype
        self.latent_channels = self.unet.config.in_channels
        self.codec = common.VaeCodec(pipe.vae.to(device).eval(), device, dtype, pipe.vae.config.scaling_factor)
        self.scheduler = schedules.scheduler_kind(model, type(pipe.scheduler).__name__)
        self._lcm = schedules.LcmBoundary(self.scheduler_config) if self.scheduler == "lcm" else None

    def step_table(self, sampler: Sampler) -> StepTable:
        """Timesteps `sampler.steps` of a `sampler.grid`-step schedule of the model's scheduler kind."""
        return schedules.discrete_step_table(self.scheduler, self.scheduler_config, sampler)

    @torch.inference_mode()
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

    @torch.inference_mode()
    def predict_x0(
        self,
        x: torch.Tensor,
        table: StepTable,
        step: int,
        cond: Embeddings,
        uncond: Embeddings | None,
        guidance: float,
        windows: Sequence[Window],
    ) -> torch.Tensor:
        t = table.timesteps[step]
        a, s = table.signal[step], table.noise[step]
        x = x.to(self.device, torch.float32)  # (B, C, h, w)
        inputs, context = common.guidance_batch(x, cond, uncond)
        eps = self.unet(inputs.to(self.dtype), t, encoder_hidden_states=context["text"].to(self.dtype)).sample.float()
        eps = common.apply_guidance(eps, uncond is not None, guidance)
        x0 = (x - s * eps) / a
        return self._lcm(x0, x, t) if self._lcm is not None else x0


def load(model: Model, device: torch.device, dtype: torch.dtype) -> SD15Denoiser:
    return SD15Denoiser(load_pipeline(model, dtype), model, device, dtype)
