"""Classifier-free guidance, written once for every family: the doubled batch and the per-item combination.

With an unconditional branch one network call evaluates [uncond items..., cond items...]; the outputs
combine per item as u + g·(c − u), each item with its own scale g (Ho & Salimans 2022, eq. 6). The scale
applies to the raw output, before `families.prediction` turns it into x0.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.families.base import Conditioning, ControlInput, Embeddings
else:
    torch = lazy_module("torch")


def guidance_batch(x: torch.Tensor, items: Conditioning) -> tuple[torch.Tensor, Embeddings, torch.Tensor, list]:
    """(inputs, context, guidance, windows) of the network call; doubled as [uncond..., cond...] with a branch."""
    windows = list(items.windows)
    if items.uncond is None:
        return x, items.cond, items.guidance, windows
    context = {key: torch.cat([items.uncond[key], items.cond[key]]) for key in items.cond}
    return torch.cat([x, x]), context, torch.cat([items.guidance, items.guidance]), windows + windows


def control_batch(items: Conditioning) -> tuple[ControlInput, ...]:
    """The call's ControlNet inputs, doubled like the items when there is an unconditional branch: both
    branches see the same control picture, as in diffusers' ControlNet pipelines."""
    if items.uncond is None:
        return items.controls
    return tuple(replace(c, image=torch.cat([c.image, c.image]), scale=torch.cat([c.scale, c.scale]))
                 for c in items.controls)


def combine(out: torch.Tensor, items: Conditioning) -> torch.Tensor:
    """The guided output of each item from a [uncond..., cond...] call's outputs: u + g·(c − u), g per item."""
    if items.uncond is None:
        return out
    out_uncond, out_cond = out.chunk(2)
    scale = items.guidance.to(out.dtype).view(-1, *(1,) * (out.dim() - 1))
    return out_uncond + scale * (out_cond - out_uncond)
