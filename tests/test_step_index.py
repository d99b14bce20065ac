"""The batched step loop (fusion + step_index) against the per-pair one it replaced, on random layouts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from semanticdraw_cli.fusion import FusionSetup, build_index, sample
from semanticdraw_cli.masks import uncovered
from semanticdraw_cli.plan import planned_steps
from semanticdraw_cli.schedule import StepTable, initial_latents
from semanticdraw_cli.step_index import lines_of, window_pixels
from semanticdraw_cli.tiles import Window, tile_grid
from tests.fake_denoisers import Recording
from tests.per_pair_fusion import sample_per_pair

STOCHASTIC = StepTable(timesteps=(999, 700, 300), signal=(0.1, 0.5, 0.8, 1.0), noise=(0.99, 0.85, 0.6, 0.0),
                       mask_levels=(0.99, 0.7, 0.3, 0.0), stochastic=True)
DETERMINISTIC = dataclasses.replace(STOCHASTIC, stochastic=False)


class RegionFunction(Recording):
    """x0 = a nonlinear function of each item's input and its region's prompt row, so a mis-gathered input,
    a wrong roll or a wrong region would change the result; optionally out of memory above `fits` items."""

    def x0(self, x, items, step):
        rows = torch.arange(x.shape[-2], dtype=x.dtype)[:, None] / x.shape[-2]
        return torch.tanh(0.8 * x + items.cond["id"][:, :, None, None] * rows) - 0.1 * step


def random_setup(seed: int, *, method: str, bootstrap: int, images: int, max_batch: int, pad: bool,
                 wrap: tuple[bool, bool], table: StepTable) -> tuple[FusionSetup, torch.Tensor, list]:
    """Random soft masks of four regions on a 24×40 latent, tile 16, stride 8 (wrapped on the asked axes)."""
    rng = np.random.default_rng(seed)
    height, width = 24, 40
    masks = np.zeros((table.steps, 4, height, width), np.float32)
    masks[:, 0] = 1.0
    for r in range(1, 4):
        top, left = rng.integers(0, height - 6), rng.integers(0, width - 6)
        masks[:, r, top : top + rng.integers(4, 14), left : left + rng.integers(4, 20)] = rng.choice([0.5, 1.0])
    masks[:, 0] = np.where(rng.random((height, width)) < 0.2, 0.0, 1.0)  # some pixels no region covers
    grid = tile_grid(height, width, 16, 8, wrap)
    plans, weights = planned_steps(masks, grid, "default", 16, torch.device("cpu"))
    cond = {"id": torch.from_numpy(rng.normal(size=(4, 4)).astype(np.float32))}
    setup = FusionSetup(
        table=table, masks=torch.from_numpy(masks), plan=plans, weights=weights, cond=cond, uncond=None,
        guidance=torch.ones(4), fill=torch.full((1, 4, 1, 1), -0.3), white=torch.ones(1, 4, 1, 1), base=None,
        bootstrap_steps=bootstrap, bootstrap_mix=1.5, leak_sensitivity=0.2, max_batch=max_batch,
        pairs_total=len(grid) * 4, method=method, pad_batches=pad,
        pull_to_fill=tuple(torch.from_numpy(u[None]) for u in uncovered(masks)),
    )
    generators = [torch.Generator().manual_seed(seed * 10 + k) for k in range(images)]
    return setup, initial_latents((4, height, width), generators, table, None), generators


def both(setup, x, generators, fits=None):
    copies = [torch.Generator().set_state(g.get_state()) for g in generators]
    batched = [(state, x0) for _stats, state, x0 in sample(RegionFunction(fits), setup, x, copies)]
    copies = [torch.Generator().set_state(g.get_state()) for g in generators]
    return batched, sample_per_pair(RegionFunction(fits), setup, x, copies)


@pytest.mark.parametrize("method, bootstrap, table", [
    ("semanticdraw", 2, STOCHASTIC), ("semanticdraw", 0, STOCHASTIC), ("semanticdraw", 2, DETERMINISTIC),
    ("multidiffusion", 0, STOCHASTIC), ("multidiffusion", 0, DETERMINISTIC),
])
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("whole", [True, False])
def test_the_batched_step_equals_the_per_pair_step_bit_for_bit(method, bootstrap, table, seed, whole):
    """CPU arithmetic in the same order: every step's latent and x0 equal, with two images, padding, a wrapped
    axis and a batch size that splits each step into several calls; groups whole (on indices, as on CUDA) or
    call by call (plain windows as slices, as on a CPU)."""
    setup, x, generators = random_setup(seed, method=method, bootstrap=bootstrap, images=2, max_batch=5, pad=True,
                                        wrap=(False, seed == 2), table=table)
    batched, per_pair = both(dataclasses.replace(setup, whole_groups=whole), x, generators)
    for (state, x0), (ref_state, ref_x0) in zip(batched, per_pair, strict=True):
        assert torch.equal(state, ref_state) and torch.equal(x0, ref_x0)


def test_out_of_memory_halving_gives_the_same_latents():
    setup, x, generators = random_setup(3, method="semanticdraw", bootstrap=1, images=2, max_batch=16, pad=False,
                                        wrap=(True, True), table=STOCHASTIC)
    batched, per_pair = both(setup, x, generators, fits=3)
    assert torch.equal(batched[-1][0], per_pair[-1][0])
    denoiser = RegionFunction(fits=3)
    stats = [s for s, _, _ in sample(denoiser, setup, x, [torch.Generator().set_state(g.get_state()) for g in generators])]
    assert max(denoiser.calls) <= 3 and stats[0].oom_halvings >= 1


def test_a_prebuilt_index_is_used_and_one_for_another_image_count_is_rebuilt():
    setup, x, generators = random_setup(4, method="semanticdraw", bootstrap=1, images=1, max_batch=8, pad=False,
                                        wrap=(False, False), table=STOCHASTIC)
    plain = [s for _, s, _ in sample(RegionFunction(), setup, x, [torch.Generator().manual_seed(0)])]
    prebuilt = dataclasses.replace(setup, index=build_index(setup, 1))
    assert torch.equal(plain[-1], [s for _, s, _ in sample(RegionFunction(), prebuilt, x,
                                                           [torch.Generator().manual_seed(0)])][-1])
    two = torch.cat([x, x])
    doubled = [s for _, s, _ in sample(RegionFunction(), prebuilt, two, [torch.Generator().manual_seed(0)] * 2)]
    assert doubled[-1].shape[0] == 2
    longer = dataclasses.replace(prebuilt, bootstrap_steps=2)  # its weights: leak weights in step 1 too
    fresh = dataclasses.replace(longer, index=None)
    assert torch.equal(*[[s for _, s, _ in sample(RegionFunction(), run, x, [torch.Generator().manual_seed(0)])][-1]
                         for run in (longer, fresh)])


def test_window_pixels_roll_like_torch_roll_and_wrap_modulo_the_canvas():
    canvas = torch.arange(6 * 10).view(6, 10)
    window = Window(2, 7, 4, 5)  # crosses the right edge of a 10-wide wrapped canvas
    pixels = torch.from_numpy(window_pixels(window, 6, 10, (1, -2)))
    rows, cols = torch.arange(2, 6) % 6, torch.arange(7, 12) % 10
    assert torch.equal(canvas.view(-1)[pixels], torch.roll(canvas[rows][:, cols], (1, -2), dims=(0, 1)))



def test_lines_are_the_window_pixels_rows_and_columns_and_say_when_columns_run_unbroken():
    """A window's lines index the same pixels as `window_pixels`; its columns run unbroken unless rolled
    sideways or wrapped across the edge (a vertical roll keeps them), and a padded part repeats the last item."""
    windows = [Window(2, 7, 4, 5), Window(0, 1, 4, 5)]
    for shifts, runs in (((), False), ([(1, 0), (0, 0)], False), ([(0, 2), (0, 0)], False)):
        lines = lines_of(windows, shifts, 6, 10, torch.device("cpu"))
        for n, window in enumerate(windows):
            expected = window_pixels(window, 6, 10, shifts[n] if shifts else (0, 0))
            assert np.array_equal(lines.rows[n].numpy()[:, None] * 10 + lines.cols[n].numpy()[None, :], expected)
        assert lines.runs is runs  # the first window crosses the right edge
    assert lines_of(windows[1:], [(3, 0)], 6, 10, torch.device("cpu")).runs
    assert not lines_of(windows[1:], [(0, 1)], 6, 10, torch.device("cpu")).runs
    padded = lines.part(slice(0, 1)).padded(2)
    assert torch.equal(padded.rows, lines.rows[[0, 0, 0]]) and torch.equal(padded.cols, lines.cols[[0, 0, 0]])


@pytest.mark.parametrize("whole", [True, False])
def test_whole_groups_or_one_calls_share_at_a_time_give_the_same_latents(whole):
    """A group gathered and scattered at once (as on CUDA) or call by call (as on a CPU): the same sums in the
    same order."""
    for method, bootstrap in (("semanticdraw", 1), ("multidiffusion", 0)):
        setup, x, generators = random_setup(5, method=method, bootstrap=bootstrap, images=2, max_batch=3, pad=True,
                                            wrap=(True, False), table=STOCHASTIC)
        batched, per_pair = both(dataclasses.replace(setup, whole_groups=whole), x, generators)
        assert torch.equal(batched[-1][0], per_pair[-1][0]) and torch.equal(batched[-1][1], per_pair[-1][1])


def test_a_group_is_kept_whole_or_split_into_calls():
    from semanticdraw_cli.fusion import _parts

    setup, x, _ = random_setup(6, method="semanticdraw", bootstrap=1, images=1, max_batch=4, pad=False,
                               wrap=(False, False), table=STOCHASTIC)
    groups = build_index(setup, 1).steps[0]
    items = sum(len(g.items) for g in groups)
    assert [len(p.items) for p, _ in _parts(groups, 4, True, x.shape[-1])] == [len(g.items) for g in groups]
    off = [len(p.items) for p, _ in _parts(groups, 4, False, x.shape[-1])]
    assert sum(off) == items and max(off) == 4


def test_only_windows_inside_the_canvas_are_cut_as_views():
    """An item whose window lies inside the canvas has a corner (a CPU copies strided views of it, rolled or not);
    a window that wraps has none, and a part with one of those stays on indices, as does a whole group."""
    from semanticdraw_cli.fusion import _parts

    setup, x, _ = random_setup(7, method="semanticdraw", bootstrap=1, images=2, max_batch=4, pad=False,
                               wrap=(False, True), table=STOCHASTIC)
    index, (height, width) = build_index(setup, 2), x.shape[-2:]
    for groups in index.steps:
        for group in groups:
            for (k, _), pair, corner in zip(group.items, group.pairs, group.corners, strict=True):
                inside = pair.window.right <= width
                assert corner == ((k * height + pair.window.top) * width + pair.window.left if inside else None)
    last = list(_parts(index.steps[-1], 4, False, width))
    assert {found for _, found in last} == {None, width}
    assert all((found is not None) == part.plain for part, found in last)
    assert all(found is None for _, found in _parts(index.steps[-1], 4, True, width))


def test_ordered_adding_sums_each_pixel_in_the_order_of_its_items():
    """`add_at`'s CUDA path (index_put_ with accumulation), run here on the CPU, gives index_add_'s bits: each
    pixel's values added item after item; the same values added in another order give other bits."""
    from semanticdraw_cli.step_index import add_at

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 50, (4000,), generator=generator)  # 80 values a pixel on average
    values = torch.randn(3, 4000, generator=generator) * torch.logspace(-4, 4, 4000)
    plain, ordered = torch.zeros(3, 50), torch.zeros(3, 50)
    add_at(plain, pixels, values, ordered=False)
    add_at(ordered, pixels, values, ordered=True)
    assert torch.equal(plain, ordered)
    reversed_order = torch.zeros(3, 50).index_add_(1, pixels.flip(0), values.flip(1))
    assert not torch.equal(plain, reversed_order)


def test_the_step_with_cuda_s_ordered_adding_equals_the_per_pair_step(monkeypatch):
    """The scatter CUDA runs (groups whole, `add_at` through index_put_), here on the CPU: the per-pair bits."""
    from semanticdraw_cli import step_index

    ordered = step_index.add_at
    monkeypatch.setattr(step_index, "add_at", lambda canvas, pixels, values: ordered(canvas, pixels, values, True))
    for method, bootstrap in (("semanticdraw", 1), ("multidiffusion", 0)):
        setup, x, generators = random_setup(8, method=method, bootstrap=bootstrap, images=2, max_batch=3, pad=False,
                                            wrap=(True, True), table=STOCHASTIC)
        batched, per_pair = both(dataclasses.replace(setup, whole_groups=True), x, generators)
        assert torch.equal(batched[-1][0], per_pair[-1][0]) and torch.equal(batched[-1][1], per_pair[-1][1])
