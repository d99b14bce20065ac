"""ControlNet entries in the sampler, with fake models: which steps and pairs use them, how calls split, and the
crop each item sees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from semanticdraw_cli.control import ControlSetup, active_steps, call_key
from semanticdraw_cli.fusion import FusionSetup, conditioning, sample
from semanticdraw_cli.step_index import centring_shift, lines_of, window_pixels
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


def random_layout(seed: int, factor: int, wrap: bool, bootstrap_steps: int, max_batch: int = 5):
    """Three random rectangles and a background row on a 20×28 latent, tile 12, stride 6 (wrapped or not), with a
    whole-canvas "depth" entry for every row and one "edges" entry per region 1 and 2, each on its own random
    source: a picture at `factor` units per latent pixel, or a 16-channel latent at 1. Calls padded."""
    rng = np.random.default_rng(seed)
    height, width, regions = 20, 28, 4
    masks = np.zeros((TABLE.steps, regions, height, width), np.float32)
    masks[:, 0] = 1.0
    for r in range(1, regions):
        top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
        masks[:, r, top : top + rng.integers(3, 10), left : left + rng.integers(3, 14)] = 1.0
    grid = tile_grid(height, width, 12, 6, (wrap, wrap))
    plans, weights = planned_steps(masks, grid, "default", 12, torch.device("cpu"))
    channels = 3 if factor > 1 else 16
    sources = torch.from_numpy(rng.random((3, channels, height * factor, width * factor)).astype(np.float32))
    controls = ControlSetup(models=("depth", "edges", "edges"), pictures=sources, weights=torch.tensor([0.5, 1.0, 1.5]),
                            steps=(frozenset(range(TABLE.steps)),) * 3, rows=((0,), (0, 1), (0, 2), (0,)), factor=factor)
    setup = FusionSetup(
        table=TABLE, masks=torch.from_numpy(masks), plan=plans, weights=weights,
        cond={"id": torch.arange(regions, dtype=torch.float32)[:, None].expand(regions, 4).clone()}, uncond=None,
        guidance=torch.ones(regions), fill=torch.zeros(1, 4, 1, 1), white=torch.ones(1, 4, 1, 1), base=None,
        bootstrap_steps=bootstrap_steps, bootstrap_mix=1.0, leak_sensitivity=0.2, max_batch=max_batch,
        pairs_total=len(grid) * regions, controls=controls, pad_batches=True,
    )
    return setup, initial_latents((4, height, width), [torch.Generator().manual_seed(seed)], TABLE, None)


def per_item_crop(setup: FusionSetup, step: int, window: Window, region: int, entry: int) -> torch.Tensor:
    """The reference: the item's window of its entry's source, one item at a time (modulo the canvas), rolled as
    its latent by its centring shift during bootstrapping."""
    height, width = setup.masks.shape[-2:]
    f = setup.controls.factor
    shift = (0, 0)
    if step < setup.bootstrap_steps:
        shift = centring_shift(setup.masks[step, region].reshape(-1)[window_pixels(window, height, width)] > 0)
    rows = np.arange(window.top * f, window.bottom * f) % (height * f)
    cols = np.arange(window.left * f, window.right * f) % (width * f)
    crop = setup.controls.pictures[entry][:, rows][:, :, cols]
    return torch.roll(crop, (shift[0] * f, shift[1] * f), dims=(-2, -1))


@pytest.mark.parametrize("factor", [8, 1])
@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("bootstrap_steps", [0, 1])
def test_a_calls_crops_equal_cutting_them_item_by_item(factor, wrap, bootstrap_steps):
    """Every call's crops (two entries of "edges" on different regions, padding, rolls, wrapped windows) are bit
    for bit the per-item slices of each item's own entry, and its scales that entry's weight."""
    setup, x = random_layout(3, factor, wrap, bootstrap_steps)
    recorder, _ = run(setup, x)
    height, width = setup.masks.shape[-2:]
    padded = mixed = crossing = rolled = 0
    for step, windows, ids, items_controls in recorder.calls:
        regions = [int(r) for r in ids]
        entries = [setup.controls.active(step, r) for r in regions]
        assert [c.model for c in items_controls] == [setup.controls.models[e] for e in entries[0]]
        for slot, control in enumerate(items_controls):
            assert control.image.is_contiguous()
            for n, (window, region) in enumerate(zip(windows, regions)):
                expected = per_item_crop(setup, step, window, region, entries[n][slot])
                assert torch.equal(control.image[n], expected)
                assert control.scale[n] == setup.controls.weights[entries[n][slot]]
                rolled += not torch.equal(expected, per_item_crop(dataclasses.replace(setup, bootstrap_steps=0),
                                                                  step, window, region, entries[n][slot]))
        padded += len(windows) == setup.max_batch and len(set(zip(windows, regions))) < len(windows)
        mixed += {1, 2} <= set(regions)
        crossing += any(w.bottom > height or w.right > width for w in windows)
    assert padded and mixed  # the cases this test is for did occur
    assert bool(crossing) == wrap and bool(rolled) == (bootstrap_steps > 0)


def dispatched_ops(function) -> int:
    """The aten operations `function()` calls from Python (each one dispatch), not counting those they call."""
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        function()
    aten = [e for e in profiler.events() if e.name.startswith("aten::")]
    nested = {id(child) for e in aten for child in e.cpu_children if child.name.startswith("aten::")}
    return sum(1 for e in aten if id(e) not in nested)


@pytest.mark.parametrize("factor", [8, 1])
@pytest.mark.parametrize("shift", [(0, 0), (2, 3)])
def test_a_calls_conditioning_takes_as_many_operations_for_16_items_as_for_2(factor, shift):
    """Crops, scales and prompt rows of a call with two ControlNets, its items on two regions with different
    "edges" pictures: the same number of dispatched operations whatever the number of items, with crop rows cut
    as whole runs of the source or, rolled, as runs of one latent pixel."""
    setup, _ = random_layout(4, factor, False, 0)
    height, width = setup.masks.shape[-2:]
    windows = [Window(int(t), int(l), 12, 12) for t, l in zip(np.arange(16) % 9, np.arange(16) % 17)]
    counts = []
    for items in (2, 16):
        pairs = [Pair(window, 1 + n % 2) for n, window in enumerate(windows[:items])]
        regions = torch.tensor([p.region for p in pairs])
        lines = lines_of([p.window for p in pairs], [shift] * items, height, width, torch.device("cpu"))
        assert lines.runs == (shift == (0, 0))
        items_of = conditioning(setup, pairs, 1, (), regions, lines)
        assert [c.image.shape[0] for c in items_of.controls] == [items, items]
        counts.append(dispatched_ops(lambda: conditioning(setup, pairs, 1, (), regions, lines)))
    assert counts[0] == counts[1] > 0
