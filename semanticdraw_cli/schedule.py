"""The step table of a render and the move from a fused x0 to the next noise level.

Every family keeps the canvas latent in variance-preserving form, x_i = a_i·x0 + s_i·eps: DDPM/LCM
natively, Euler (SDXL) as x / sqrt(1 + σ²), flow matching (SD3) with a = 1 − σ, s = σ. A step table
holds a_i and s_i explicitly, so the sampler is stateless: step i reads index i of the table and
never a scheduler's internal counter shared across windows or regions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


@dataclass(frozen=True)
class StepTable:
    """The schedule of one render, explicit and stateless."""

    timesteps: tuple[float, ...]  # (n,) what the model is conditioned on at step i
    signal: tuple[float, ...]  # (n + 1,) a_i; index n is the level after the last step
    noise: tuple[float, ...]  # (n + 1,) s_i
    mask_levels: tuple[float, ...]  # (n + 1,) noise levels that quantize the masks; last is 0
    stochastic: bool  # True: re-noise with fresh eps (LCM); False: reuse the predicted eps (DDIM, Euler)
    init_scale: float = 1.0  # initial canvas = init_scale·eps; Euler trailing starts at s_0·eps in this form

    @property
    def steps(self) -> int:
        return len(self.timesteps)


def draw(generators: Sequence[torch.Generator], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """One canvas-wide draw per image, on the CPU, so results do not depend on device or plan.

    To CUDA through pinned memory: the copy then needs no host sync inside the step loop.
    """
    eps = torch.empty((len(generators), *shape))
    for row, generator in zip(eps, generators):  # into place: a stack would copy the canvas once more
        torch.randn(shape, generator=generator, out=row)
    if torch.device(device).type == "cuda":
        return eps.pin_memory().to(device, non_blocking=True)
    return eps.to(device)


def initial_latents(
    shape: tuple[int, int, int], generators: Sequence[torch.Generator], table: StepTable, base: torch.Tensor | None,
    compose: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Pure noise per image (its own seeded CPU generator), or the background image noised to step 0.

    `compose` replaces part of the drawn noise (regions with their own seed, `region_sampling`)."""
    eps = torch.stack([torch.randn(shape, generator=g) for g in generators])  # (N, C, h, w)
    if compose is not None:
        eps = compose(eps)
    if base is None:
        return table.init_scale * eps if table.init_scale != 1.0 else eps
    return table.signal[0] * base.cpu() + table.noise[0] * eps


def renoise(
    x: torch.Tensor, x0: torch.Tensor, i: int, generators: Sequence[torch.Generator], table: StepTable
) -> torch.Tensor:
    """Move the fused x0 of step i to the level of step i + 1, once for the whole canvas.

    The paper's latent pre-averaging (arXiv 2403.09055, §3.2 Step 1): the regions' x0 estimates are averaged
    first and the scheduler's step x_{i+1} = a_{i+1}·x0 + s_{i+1}·eps runs once on the average, so a
    stochastic sampler's fresh noise is not averaged away (which MultiDiffusion's per-region steps do).

    Stochastic samplers (LCM) draw fresh noise; deterministic ones (DDIM, Euler, flow matching) reuse
    the noise the prediction implies, eps = (x − a_i·x0) / s_i. The last step returns x0 itself.
    """
    if table.stochastic:
        if i == table.steps - 1:
            return x0
        eps = draw(generators, tuple(x.shape[1:]), x.device)
    else:
        eps = (x - table.signal[i] * x0).div_(table.noise[i])
    return (table.signal[i + 1] * x0).add_(eps.mul_(table.noise[i + 1]))  # in place: no canvas-sized temporaries
