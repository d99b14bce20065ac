"""Conditioning shared by families: CLIP text embeddings and the timestep as a device tensor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


def clip_embeddings(tokenizer, encoder, texts, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate hidden states (B, 77, D), pooled output (B, P)) of one CLIP encoder, as SDXL and SD3 use them."""
    ids = tokenizer(
        list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    out = encoder(ids.to(device), output_hidden_states=True)
    return out.hidden_states[-2], out[0]


def timestep(t: float, device: torch.device) -> torch.Tensor:
    """The timestep as a 0-d device tensor made by a fill: a Python number would be copied to the device by the
    network, a host sync per call. The dtypes are the ones a UNet picks for a Python int or float."""
    if isinstance(t, int):
        return torch.full((), t, dtype=torch.int64, device=device)
    return torch.full((), t, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
