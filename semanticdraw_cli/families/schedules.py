"""Step tables of the discrete-time schedulers (lcm, ddim, euler-trailing) that sd15 and sdxl share.

The scheduler kind comes from the scene's resolved model (`model.accelerator.scheduler`), else from the
checkpoint's own scheduler. Every table is in the variance-preserving canvas form x = a·x0 + s·eps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import registry
from semanticdraw_cli.lazy import lazy_module
from semanticdraw_cli.schedule import StepTable

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


def scheduler_kind(model, own_scheduler: str) -> str:
    """The scheduler the model samples with: its accelerator's (named, or given with a LoRA); else the
    checkpoint's own (`own_scheduler`, its class name): LCM when it ships LCMScheduler, else the family's."""
    if model.accelerator.scheduler is not None:
        return model.accelerator.scheduler
    named = registry.accelerators().get(model.accelerator.name)
    if named is not None:
        return named.scheduler
    family = registry.family(model.family)
    if own_scheduler == "LCMScheduler" and "lcm" in family.schedulers:
        return "lcm"
    return family.own_scheduler


def window_tokens(sampler, canvas, token_side: int) -> int:
    """Tokens of one window the network sees: the tile clipped to the canvas, `token_side` pixels a token.

    A resolution-dependent shift (FLUX.1-dev's and klein's `mu`) follows the picture the network is given:
    on a canvas smaller than the tile that picture is the canvas, as in the family's own pipeline.
    """
    height, width = min(sampler.tile.size, canvas.height), min(sampler.tile.size, canvas.width)
    return (height // token_side) * (width // token_side)


def discrete_step_table(kind: str, config: dict, sampler) -> StepTable:
    """Timesteps `sampler.steps` of a `sampler.grid`-step lcm | ddim | euler-trailing schedule, in the
    variance-preserving canvas form x = a·x0 + s·eps, from the checkpoint's scheduler config."""
    if kind == "euler-trailing":
        return euler_trailing_table(config, sampler)
    if kind not in ("lcm", "ddim"):
        raise RenderError(f"this model family cannot sample with {kind!r}; use lcm, ddim or euler-trailing")
    from diffusers import DDIMScheduler, LCMScheduler

    scheduler = (LCMScheduler if kind == "lcm" else DDIMScheduler).from_config(config)
    scheduler.set_timesteps(sampler.grid)
    timesteps = [int(scheduler.timesteps[i]) for i in sampler.steps]
    alphas = scheduler.alphas_cumprod.double()
    signal = [float(alphas[t].sqrt()) for t in timesteps]
    noise = [float((1 - alphas[t]).sqrt()) for t in timesteps]
    final = 1.0 if kind == "lcm" else float(scheduler.final_alpha_cumprod)
    signal.append(final**0.5)
    noise.append((1.0 - final) ** 0.5)
    return StepTable(
        timesteps=tuple(timesteps),
        signal=tuple(signal),
        noise=tuple(noise),
        mask_levels=tuple(noise[:-1]) + (0.0,),
        stochastic=kind == "lcm",
    )


def euler_trailing_table(config: dict, sampler) -> StepTable:
    """Euler with trailing timesteps, in VP form: a = 1/sqrt(1 + σ²), s = σ/sqrt(1 + σ²)."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing")
    scheduler.set_timesteps(sampler.grid)
    sigmas = [float(scheduler.sigmas[i]) for i in sampler.steps] + [0.0]  # σ_n = 0: the clean image
    signal = [1.0 / (1.0 + sigma**2) ** 0.5 for sigma in sigmas]
    noise = [sigma / (1.0 + sigma**2) ** 0.5 for sigma in sigmas]
    # The pipeline starts from init_noise_sigma·eps in Euler form; in VP form that is this multiple of eps.
    init_scale = float(scheduler.init_noise_sigma) / (1.0 + sigmas[0] ** 2) ** 0.5
    return StepTable(
        timesteps=tuple(float(scheduler.timesteps[i]) for i in sampler.steps),
        signal=tuple(signal),
        noise=tuple(noise),
        mask_levels=tuple(noise[:-1]) + (0.0,),
        stochastic=False,
        init_scale=init_scale,
    )


class LcmBoundary:
    """LCM's boundary condition on an x0 estimate: x0 = c_out(t)·x0 + c_skip(t)·x."""

    def __init__(self, config: dict):
        from diffusers import LCMScheduler

        self._scheduler = LCMScheduler.from_config(config)  # for its scalings only

    def __call__(self, x0: torch.Tensor, x: torch.Tensor, t: int) -> torch.Tensor:
        c_skip, c_out = self._scheduler.get_scalings_for_boundary_condition_discrete(t)
        return c_out * x0 + c_skip * x
