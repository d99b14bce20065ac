"""ControlNet entries as the sampler sees them: which entries each (step, region) pair uses, the grouping key
that keeps a ControlNet to the calls of the items that use it, and each item's crop of its control picture
(architecture.md §4.2).

Family-free: each entry's source is a canvas-size tensor given by the family (`control_source`: the picture for
a UNet family's ControlNet, the picture's latent for sd3 and flux), a crop is the window's latent rows and
columns times the source's factor, rolled with the latent during mask-centering bootstrapping so the ControlNet
sees what the network sees. A call's crops are cut in one indexing operation per ControlNet, whatever its items.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from semanticdraw_cli.families.base import ControlInput
from semanticdraw_cli.plan import Pair

if TYPE_CHECKING:
    from semanticdraw_cli.step_index import Lines


@dataclass(frozen=True)
class ControlSetup:
    """The scene's ControlNet entries (whole-canvas ones first) and which region rows use each."""

    models: tuple[str, ...]  # per entry: the ControlNet reference
    # (E, C, H, W) on the device: per entry what crops are cut from, the picture (3, H, W) in [0, 1] or a (C, h, w)
    # latent, stacked so that one operation cuts a call's crops whichever entries its items use
    pictures: torch.Tensor
    weights: torch.Tensor  # (E,) float32 per entry, on the device
    steps: tuple[frozenset[int], ...]  # per entry: the steps it acts in (its start..end share of the steps)
    rows: tuple[tuple[int, ...], ...]  # per region row of the masks (background prompt first): its entries
    factor: int  # units of `pictures` per latent pixel: the latent factor for pictures, 1 for latents
    # Made once, long on the device: per step, each region row's active entries padded with entry 0, (R, most);
    # where each entry's channel starts in `pictures` and each latent row's source rows start, (E, C) and (h, f),
    # counted in runs of `factor` values (a crop row starts at a latent column: a whole run)
    table: tuple[torch.Tensor, ...] = field(init=False, repr=False, compare=False)
    planes: torch.Tensor = field(init=False, repr=False, compare=False)
    line_starts: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        device, regions = self.weights.device, len(self.rows)
        steps, most = max((max(s) + 1 for s in self.steps if s), default=0), max(map(len, self.rows), default=0)
        table = [[(*self.active(i, r), *(0,) * most)[:most] for r in range(regions)] for i in range(steps)]
        table = torch.tensor(table, dtype=torch.long, device=device).view(steps, regions, most)
        object.__setattr__(self, "table", tuple(table))
        object.__setattr__(self, "pictures", self.pictures.contiguous())  # read as runs of its flat storage
        entries, channels, height, width = self.pictures.shape
        runs = width // self.factor  # runs of `factor` values per source row
        planes = torch.arange(entries * channels, device=device).view(entries, channels) * (height * runs)
        object.__setattr__(self, "planes", planes)
        object.__setattr__(self, "line_starts", torch.arange(height, device=device).view(-1, self.factor) * runs)

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


def inputs(setup: ControlSetup | None, step: int, region: int, regions: torch.Tensor,
           lines: Lines) -> tuple[ControlInput, ...]:
    """One `ControlInput` per ControlNet of a call whose items share region row `region`'s key at `step`: each
    item's crop of its own entry's source and that entry's weight. `regions` (B,) are the items' region rows and
    `lines` their window rows and columns in latent pixels, rolled with the latent during bootstrapping and
    modulo the canvas (`step_index.Lines`), on the device. A fixed number of operations per ControlNet, whatever
    the items; crops are copied, not computed, so they equal slicing item by item."""
    if setup is None or not setup.active(step, region):
        return ()
    (items, height), width, f = lines.rows.shape, lines.cols.shape[1], setup.factor
    # Each crop row is read as runs of the flat source: one run of w·f values where the columns go left to right
    # unbroken, else w runs of f; `starts` counts in runs of f values, as `planes` and `line_starts` do
    length, cols = (width * f, lines.cols[:, :1]) if lines.runs else (f, lines.cols)
    runs = setup.pictures.as_strided(((setup.pictures.numel() - length) // f + 1, length), (f, 1))
    rows = setup.line_starts.index_select(0, lines.rows.view(-1)).view(items, 1, height * f, 1)
    starts = rows + cols.view(items, 1, 1, -1)  # (B, 1, h·f, runs per row)
    slots = setup.table[step].index_select(0, regions).unbind(1)  # per ControlNet of the call: (B,) entries
    shape = (items, -1, height * f, width * f)
    return tuple(
        ControlInput(setup.models[e], _cut(runs, setup.planes.index_select(0, entries), starts, shape),
                     setup.weights.index_select(0, entries))
        for e, entries in zip(setup.active(step, region), slots)
    )


def _cut(runs: torch.Tensor, planes: torch.Tensor, starts: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The crops (B, C, h·f, w·f): the runs at `starts` (B, 1, h·f, n) of each item's channel planes (B, C)."""
    return runs.index_select(0, (planes.view(len(planes), -1, 1, 1) + starts).view(-1)).view(shape)
