"""From a network's raw output to the clean-latent estimate the sampler fuses, written once for every family.

Every family keeps the canvas in variance-preserving form, x = a·x0 + s·eps (architecture.md §4), and
declares what its network predicts. The conversion is then one formula per parameterization:
epsilon: x0 = (x − s·eps) / a; v_prediction (v = a·eps − s·x0, Salimans & Ho 2022, with a² + s² = 1):
x0 = a·x − s·v; flow matching (v = eps − x0, a = 1 − s): x0 = x − s·v. `Predictor` gives an adapter the
contract's `predict_x0` from its `network_output`: guidance batching (`families.guidance`), the call,
the per-item guidance, the conversion and a consistency model's boundary condition, in that order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import guidance, region_loras
from semanticdraw_cli.lazy import inference_mode, lazy_module

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.families.base import Conditioning, Parameterization
    from semanticdraw_cli.schedule import StepTable
else:
    torch = lazy_module("torch")

PARAMETERIZATIONS = ("epsilon", "v_prediction", "flow")


def to_x0(parameterization: Parameterization, out: torch.Tensor, x: torch.Tensor, a: float, s: float) -> torch.Tensor:
    """The clean-latent estimate from a raw output `out` at the level x = a·x0 + s·eps."""
    if parameterization == "epsilon":
        return (x - s * out) / a
    if parameterization == "v_prediction":
        return a * x - s * out
    if parameterization == "flow":
        return x - s * out
    raise ValueError(f"unknown parameterization {parameterization!r}; expected one of {PARAMETERIZATIONS}")


def scheduler_parameterization(config: dict, checkpoint: str) -> Parameterization:
    """What a UNet checkpoint predicts, from its scheduler config's `prediction_type` (epsilon when absent)."""
    kind = config.get("prediction_type", "epsilon")
    if kind not in ("epsilon", "v_prediction"):
        raise RenderError(f"{checkpoint!r} predicts {kind!r}; expected epsilon or v_prediction")
    return kind


class Predictor:
    """The contract's `predict_x0` for an adapter that has `network_output`, `parameterization` and `boundary`."""

    boundary = None

    @inference_mode
    def predict_x0(self, x: torch.Tensor, table: StepTable, step: int, items: Conditioning) -> torch.Tensor:
        """(B, C, h, w) noisy latents -> (B, C, h, w) float32 x0 estimates, each item guided by its own scale."""
        x = x.to(self.device, torch.float32)
        region_loras.activate(self, items.variant)  # the call's LoRA set: the batcher never mixes two in a call
        inputs, context, scale, windows = guidance.guidance_batch(x, items)
        extra = {"controls": guidance.control_batch(items)} if items.controls else {}
        out = guidance.combine(self.network_output(inputs, table, step, context, scale, windows, **extra), items)
        x0 = to_x0(self.parameterization, out, x, table.signal[step], table.noise[step])
        return self.boundary(x0, x, table.timesteps[step]) if self.boundary is not None else x0
