"""Network calls of a step with fake models: batch shapes, auto sizing, padding, and surviving out-of-memory errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from semanticdraw_cli import batching
from semanticdraw_cli.fusion import FusionSetup, sample
from semanticdraw_cli.plan import Pair, planned_steps
from semanticdraw_cli.schedule import StepTable, initial_latents
from semanticdraw_cli.tiles import Window, tile_grid
from tests.fake_denoisers import Recording

TABLE = StepTable(timesteps=(999, 500), signal=(0.1, 0.7, 1.0), noise=(0.99, 0.7, 0.0), mask_levels=(0.99, 0.7, 0.0),
                  stochastic=True)



def setup_for(max_batch: int, images: int = 1, bootstrap_steps: int = 1) -> tuple[FusionSetup, torch.Tensor, list]:
    """Three regions on a 16×40 latent, windows of 16 with stride 8: several pairs per window shape and step."""
    masks = np.zeros((TABLE.steps, 3, 16, 40), np.float32)
    masks[:, 0] = 1.0
    masks[:, 1, :, :20] = 1.0
    masks[:, 2, 4:12, 24:36] = 1.0
    grid = tile_grid(16, 40, 16, 8)
    plans, weights = planned_steps(masks, grid, "default", 16, torch.device("cpu"))
    setup = FusionSetup(
        table=TABLE, masks=torch.from_numpy(masks), plan=plans, weights=weights,
        cond={"id": torch.arange(3, dtype=torch.float32)[:, None].expand(3, 4).clone()}, uncond=None, guidance=torch.ones(3),
        fill=torch.zeros(1, 4, 1, 1), white=torch.ones(1, 4, 1, 1), base=None, bootstrap_steps=bootstrap_steps,
        bootstrap_mix=1.0, leak_sensitivity=0.2, max_batch=max_batch, pairs_total=len(grid) * 3,
    )
    generators = [torch.Generator().manual_seed(k) for k in range(images)]
    return setup, initial_latents((4, 16, 40), generators, TABLE, None), generators


def run(denoiser, setup, x, generators):
    states = list(sample(denoiser, setup, x, [torch.Generator().set_state(g.get_state()) for g in generators]))
    return states[-1][1], [stats for stats, _, _ in states]


def test_chunks_keep_one_window_shape_per_batch():
    pairs = [Pair(Window(0, 0, 8, 8), 0), Pair(Window(0, 8, 8, 4), 0), Pair(Window(8, 0, 8, 8), 1)]
    items = [(k, j) for k in range(2) for j in range(3)]
    assert list(batching.chunks(items, pairs, 3)) == [[(0, 0), (0, 2), (1, 0)], [(1, 2)], [(0, 1), (1, 1)]]


def test_only_another_shape_or_network_variant_splits_a_call():
    """Regions with different prompts share a call; regions that need another network variant never do."""
    window = Window(0, 0, 8, 8)
    pairs = [Pair(window, 0), Pair(window, 1), Pair(window, 2)]
    items = [(0, j) for j in range(3)]
    assert list(batching.chunks(items, pairs, 8)) == [items]
    assert list(batching.chunks(items, pairs, 8, ("base", "lora", "base"))) == [[(0, 0), (0, 2)], [(0, 1)]]


def test_each_item_of_a_call_gets_its_own_regions_guidance_and_variant():
    setup, x, generators = setup_for(max_batch=8)
    setup = dataclasses.replace(setup, guidance=torch.tensor([1.0, 2.5, 4.0]), variants=("base", "base", "lora"))
    seen = []

    class Recorder(Recording):
        def predict_x0(self, x, table, step, items):
            seen.append((items.cond["id"][:, 0].tolist(), items.guidance.tolist(), items.variant))
            return super().predict_x0(x, table, step, items)

    run(Recorder(), setup, x, generators)
    assert all(g == [[1.0, 2.5, 4.0][int(r)] for r in ids] for ids, g, _ in seen)
    assert all({int(r) for r in ids} <= ({0, 1} if variant == "base" else {2}) for ids, _, variant in seen)
    assert any({0, 1} <= {int(r) for r in ids} for ids, _, _ in seen)  # two regions' scales in one call


def test_demand_is_the_most_items_of_one_shape_in_a_step():
    small, large = Window(0, 0, 4, 4), Window(0, 0, 8, 8)
    plans = [(Pair(large, 0), Pair(large, 1), Pair(small, 0)), (Pair(large, 0),)]
    assert batching.demand(plans, images=3) == 6


def test_auto_batch_off_cuda_is_the_fixed_size_and_never_probes():
    def probe():
        raise AssertionError("no memory probe off CUDA")

    assert batching.auto_max_batch(torch.device("cpu"), 19, probe) == 8
    assert batching.auto_max_batch(torch.device("cpu"), 5, probe) == 5


def test_running_out_of_memory_halves_the_batch_and_gives_the_same_canvas():
    setup, x, generators = setup_for(max_batch=8, images=2)
    expected, _ = run(Recording(), dataclasses.replace(setup, max_batch=2), x, generators)
    denoiser = Recording(fits=2)
    final, stats = run(denoiser, setup, x, generators)
    assert torch.equal(final, expected)  # the same calls of two items, in the same order
    assert max(denoiser.calls) == 2
    assert stats[0].oom_halvings == 2 and stats[0].max_batch == 2  # 8 -> 4 -> 2, kept for the later steps
    assert sum(s.oom_halvings for s in stats[1:]) == 0


def test_one_item_that_does_not_fit_is_an_error():
    setup, x, generators = setup_for(max_batch=4)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run(Recording(fits=0), setup, x, generators)


def test_padding_keeps_one_batch_shape_and_discards_the_padding():
    setup, x, generators = setup_for(max_batch=5, images=2)
    expected, plain = run(Recording(), setup, x, generators)
    denoiser = Recording()
    final, stats = run(denoiser, dataclasses.replace(setup, pad_batches=True), x, generators)
    assert set(denoiser.calls) == {5}
    evaluated = 5 * sum(s.network_calls for s in stats)
    assert sum(s.padded_items for s in stats) == evaluated - sum(s.batch_items for s in plain)
    torch.testing.assert_close(final, expected, rtol=0, atol=0)
