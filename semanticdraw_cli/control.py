"""ControlNet entries as the sampler sees them: which entries each (step, region) pair uses, the grouping key
that keeps a ControlNet to the calls of the items that use it, and each item's crop of its control picture
(architecture.md §4.2).

Family-free: each entry's source is a canvas-size tensor given by the family (`control_source`: the picture for
a UNet family's ControlNet, the picture's latent for sd3 and flux), a crop is the window's latent slices times
the source's factor, rolled with the latent during mask-centering bootstrapping so the ControlNet sees what the
network sees.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

from semanticdraw_cli.families.base import ControlInput
from semanticdraw_cli.plan import Pair


@dataclass(frozen=True)
class ControlSetup:
    """The scene's ControlNet entries (whole-canvas ones first) and which region rows use each."""

    models: tuple[str, ...]  # per entry: the ControlNet reference
    pictures: tuple[torch.Tensor, ...]  # per entry: what crops are cut from, (3, H, W) in [0, 1] or a (C, h, w) latent
    weights: torch.Tensor  # (E,) float32 per entry, on the device
    steps: tuple[frozenset[int], ...]  # per entry: the steps it acts in (its start..end share of the steps)
    rows: tuple[tuple[int, ...], ...]  # per region row of the masks (background prompt first): its entries
    factor: int  # units of `pictures` per latent pixel: the latent factor for pictures, 1 for latents

    def active(self, step: int, region: int) -> tuple[int, ...]:
        """The entries a pair of this region runs through at this step, in order."""
        return tuple(e for e in self.rows[region] if step in self.steps[e])


def active_steps(start: float, end: float, steps: int) -> frozenset[int]:
    """Steps i of n with start <= i/n and (i + 1)/n <= end: diffusers' `control_guidance_start/end` rule."""
    return frozenset(i for i in range(steps) if not (i / steps < start or (i + 1) / steps > end))


def call_key(setup: ControlSetup | None, step: int) -> Callable[[Pair], Hashable] | None:
    """What splits a step's calls besides the window shape: the ControlNets a pair runs through (None: none)."""
    if setup is None:
        return None
    return lambda pair: tuple(setup.models[e] for e in setup.active(step, pair.region))


def inputs(setup: ControlSetup | None, step: int, pairs: Sequence[Pair],
           shifts: Sequence[tuple[int, int]] = ()) -> tuple[ControlInput, ...]:
    """One `ControlInput` per ControlNet of the call (all pairs share the key): each item's picture crop, rolled by
    its bootstrap shift, and its entry's weight."""
    if setup is None or not pairs:
        return ()
    chosen = [setup.active(step, pair.region) for pair in pairs]
    f = setup.factor
    controls = []
    for slot, model in enumerate(setup.models[e] for e in chosen[0]):
        crops = []
        for n, pair in enumerate(pairs):
            rows, cols = pair.window.slices
            crop = setup.pictures[chosen[n][slot]][:, rows.start * f:rows.stop * f, cols.start * f:cols.stop * f]
            if shifts:
                crop = torch.roll(crop, (shifts[n][0] * f, shifts[n][1] * f), dims=(-2, -1))
            crops.append(crop)
        scale = torch.stack([setup.weights[chosen[n][slot]] for n in range(len(pairs))])
        controls.append(ControlInput(model, torch.stack(crops), scale))
    return tuple(controls)
