"""ControlNet entries in the sampler, with fake models: which steps and pairs use them, how calls split, and the
crop each item sees."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from semanticdraw_cli.control import ControlSetup, active_steps, call_key
from semanticdraw_cli.fusion import FusionSetup, sample
from semanticdraw_cli.step_index import centring_shift
from semanticdraw_cli.plan import Pair, planned_steps
from semanticdraw_cli.schedule import StepTable, initial_latents
from semanticdraw_cli.tiles import Window, tile_grid

TABLE = StepTable(timesteps=(999, 500), signal=(0.1, 0.7, 1.0), noise=(0.99, 0.7, 0.0), mask_levels=(0.99, 0.7, 0.0),
                  stochastic=True)
FACTOR = 2  # canvas pixels per latent pixel in these tests


class Recorder:
    """x0 = a function of the input and of each item's control crops; keeps every call's items."""

    def __init__(self):
        self.calls = []

    def predict_x0(self, x, table, step, items):
        self.calls.append((step, [w for w in items.windows], items.cond["id"][:, 0].tolist(), items.controls))
        out = 0.5 * x
        for control in items.controls:
            out = out + control.scale[:, None, None, None] * control.image.mean(dim=(1, 2, 3))[:, None, None, None]
        return out


def picture(height: int, width: int, seed: int) -> torch.Tensor:
    """(3, H, W) in [0, 1], different everywhere, so that a crop tells where it was taken."""
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def setup_for(controls: ControlSetup | None, bootstrap_steps: int = 0, max_batch: int = 8):
    """Two regions on a 16×40 latent, windows of 16 with stride 8 (four windows)."""
    masks = np.zeros((TABLE.steps, 2, 16, 40), np.float32)
    masks[:, 0] = 1.0
    masks[:, 1, 4:12, 24:36] = 1.0
    grid = tile_grid(16, 40, 16, 8)
    plans, weights = planned_steps(masks, grid, "default", 16, torch.device("cpu"))
    setup = FusionSetup(
        table=TABLE, masks=torch.from_numpy(masks), plan=plans, weights=weights,
        cond={"id": torch.arange(2, dtype=torch.float32)[:, None].expand(2, 4).clone()}, uncond=None,
        guidance=torch.ones(2), fill=torch.zeros(1, 4, 1, 1), white=torch.ones(1, 4, 1, 1), base=None,
        bootstrap_steps=bootstrap_steps, bootstrap_mix=1.0, leak_sensitivity=0.2, max_batch=max_batch,
        pairs_total=len(grid) * 2, controls=controls,
    )
    generator = torch.Generator().manual_seed(0)
    return setup, initial_latents((4, 16, 40), [generator], TABLE, None)


def controls(rows, models=("edges",), weights=(1.0,), steps=None) -> ControlSetup:
    count = len(models)
    return ControlSetup(
        models=tuple(models), pictures=torch.stack([picture(32, 80, e) for e in range(count)]),
        weights=torch.tensor(weights), steps=steps or (frozenset(range(TABLE.steps)),) * count, rows=rows,
        factor=FACTOR,
    )


def run(setup, x):
    recorder = Recorder()
    states = list(sample(recorder, setup, x, [torch.Generator().manual_seed(1)]))
    return recorder, [state[1] for state in states]


def test_active_steps_follow_diffusers_start_and_end_rule():
    assert active_steps(0.0, 1.0, 4) == {0, 1, 2, 3}
    assert active_steps(0.0, 0.75, 4) == {0, 1, 2}
    assert active_steps(0.5, 1.0, 4) == {2, 3}
    assert active_steps(0.3, 0.3, 4) == set()


def test_each_item_sees_the_crop_of_its_own_window():
    """Four windows of a 16×40 latent: every item's crop is the picture at its window's pixels (×2)."""
    setup, x = setup_for(controls(rows=((0,), (0,))))
    recorder, _ = run(setup, x)
    seen = 0
    for _, windows, _, items_controls in recorder.calls:
        (edges,) = items_controls
        for n, window in enumerate(windows):
            rows, cols = window.slices
            expected = setup.controls.pictures[0][:, rows.start * 2:rows.stop * 2, cols.start * 2:cols.stop * 2]
            assert torch.equal(edges.image[n], expected)
            seen += 1
    assert seen == sum(len(pairs) for pairs in setup.plan)
    assert {w.left for _, windows, _, _ in recorder.calls for w in windows} == {0, 8, 16, 24}


def test_a_regions_control_reaches_only_its_items_in_calls_of_their_own():
    setup, x = setup_for(controls(rows=((), (0,))))
    recorder, _ = run(setup, x)
    for _, _, regions, items_controls in recorder.calls:
        assert len(set(regions)) == 1  # the ControlNet splits the call: region 1's items run it, region 0's do not
        assert bool(items_controls) == (regions[0] == 1)
    assert any(regions[0] == 1 for _, _, regions, _ in recorder.calls)


def test_entries_act_only_in_their_steps_and_with_their_weight():
    setup, x = setup_for(controls(rows=((0,), (0,)), weights=(0.5,), steps=(frozenset({1}),)))
    recorder, _ = run(setup, x)
    assert all(not c for step, _, _, c in recorder.calls if step == 0)
    later = [c for step, _, _, c in recorder.calls if step == 1]
    assert later and all(c[0].scale.tolist() == [0.5] * len(c[0].scale) for c in later)


def test_bootstrap_rolls_the_crop_with_the_latent():
    """During bootstrapping region 1's input is rolled to centre its mask; its crop rolls by the same pixels."""
    setup, x = setup_for(controls(rows=((), (0,))), bootstrap_steps=1)
    recorder, _ = run(setup, x)
    step0 = [c for c in recorder.calls if c[0] == 0 and c[2][0] == 1]
    assert step0
    for _, windows, _, (edges,) in step0:
        for n, window in enumerate(windows):
            rows, cols = window.slices
            crop = setup.controls.pictures[0][:, rows.start * 2:rows.stop * 2, cols.start * 2:cols.stop * 2]
            dy, dx = centring_shift(setup.masks[0, 1, rows, cols] > 0)
            assert (dy, dx) != (0, 0)
            assert torch.equal(edges.image[n], torch.roll(crop, (dy * 2, dx * 2), dims=(-2, -1)))


def test_call_key_names_the_controlnets_a_pair_runs():
    setup = controls(rows=((0,), (0, 1)), models=("edges", "depth"), weights=(1.0, 1.0))
    key = call_key(setup, 0)
    assert key(Pair(Window(0, 0, 8, 8), 0)) == ("edges",)
    assert key(Pair(Window(0, 0, 8, 8), 1)) == ("edges", "depth")
    assert call_key(None, 0) is None
    assert dataclasses.replace(setup, steps=(frozenset(), frozenset({0}))).active(0, 1) == (1,)
