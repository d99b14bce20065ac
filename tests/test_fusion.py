"""Fusion sampler pieces with a fake model: centring, leak suppression, re-noising, model reuse."""

import dataclasses

import numpy as np
import pytest
import torch

from semanticdraw_cli.fusion import FusionSetup, sample
from semanticdraw_cli.step_index import centring_shift
from semanticdraw_cli.plan import planned_steps
from semanticdraw_cli.schedule import StepTable
from semanticdraw_cli.plan import Pair
from semanticdraw_cli.tiles import Window, tile_grid

TABLE = StepTable(timesteps=(999, 500), signal=(0.1, 0.7, 1.0), noise=(0.99, 0.7, 0.0), mask_levels=(0.99, 0.7, 0.0),
                  stochastic=True)


class RecordingDenoiser:
    """Returns a constant x0 per item and remembers what it was given."""

    def __init__(self, value: float):
        self.value = value
        self.inputs: list[torch.Tensor] = []

    def predict_x0(self, x, table, step, items):
        self.inputs.append(x.clone())
        return torch.full_like(x, self.value)


def setup_for(mask: torch.Tensor, bootstrap_steps: int) -> FusionSetup:
    window = Window(0, 0, *mask.shape)
    steps = TABLE.steps
    return FusionSetup(
        table=TABLE, masks=mask.expand(steps, 1, *mask.shape).clone(), plan=((Pair(window, 0),),) * steps,
        weights=((torch.ones(mask.shape),),) * steps, cond={"id": torch.zeros(1, 1)}, uncond=None, guidance=torch.ones(1),
        fill=torch.full((1, 4, 1, 1), -1.0), white=torch.full((1, 4, 1, 1), 2.0), base=None,
        bootstrap_steps=bootstrap_steps, bootstrap_mix=1.0, leak_sensitivity=0.2, max_batch=4, pairs_total=1,
    )


def test_centring_shift_moves_the_bounding_box_centre_to_the_window_centre():
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[1:5, 10:14] = True  # centre (3, 12)
    assert centring_shift(mask) == (8 - 3, 8 - 12)
    assert centring_shift(torch.zeros(4, 4, dtype=torch.bool)) == (0, 0)


def bootstrap_background(shape, seed: int) -> torch.Tensor:
    """noised_0(white) as the sampler draws it: the generator's first draw is the bootstrap eps."""
    eps = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return TABLE.signal[0] * 2.0 + TABLE.noise[0] * eps


def test_bootstrapping_centres_the_region_on_a_white_bootstrap_background():
    mask = torch.zeros(16, 16)
    mask[0:4, 0:4] = 1.0  # bounding-box centre (2, 2): rolled by (6, 6) to the window centre (8, 8)
    denoiser = RecordingDenoiser(5.0)
    x = torch.zeros(1, 4, 16, 16)
    list(sample(denoiser, setup_for(mask, bootstrap_steps=1), x, [torch.Generator().manual_seed(0)]))
    first, second = denoiser.inputs
    expected = torch.where(mask.bool(), x[0], bootstrap_background((4, 16, 16), 0))
    torch.testing.assert_close(first[0], torch.roll(expected, (6, 6), dims=(-2, -1)))
    assert (first[0, :, 6:10, 6:10] == 0).all()
    # step 1 is not bootstrapped: the canvas goes in as it is, unrolled
    assert second.shape == first.shape and not torch.equal(second, first)


@pytest.mark.parametrize("prediction, kept", [("background", False), ("far", True)])
def test_leak_suppression_drops_pixels_that_stayed_bootstrap_background(prediction, kept):
    mask = torch.zeros(8, 8)
    mask[2:6, 2:6] = 1.0  # already centred: no roll
    background = bootstrap_background((4, 8, 8), 0)

    class Fixed:
        def predict_x0(self, x, table, step, items):
            value = background if prediction == "background" else torch.full((4, 8, 8), 10.0)
            return value[None].expand_as(x).clone()

    setup = dataclasses.replace(setup_for(mask, bootstrap_steps=1), fill=torch.full((1, 4, 1, 1), -1.0))
    _, x1, _ = next(iter(sample(Fixed(), setup, torch.zeros(1, 4, 8, 8), [torch.Generator().manual_seed(0)])))
    generator = torch.Generator().manual_seed(0)
    torch.randn((4, 8, 8), generator=generator)  # the bootstrap eps
    renoise = torch.randn((4, 8, 8), generator=generator)
    x0 = (x1[0] - TABLE.noise[1] * renoise) / TABLE.signal[1]
    inside = x0[:, 2:6, 2:6]
    if kept:
        torch.testing.assert_close(inside, torch.full_like(inside, 10.0), atol=1e-3, rtol=1e-4)
    else:  # no weight left: the fill shows through
        torch.testing.assert_close(inside, torch.full_like(inside, -1.0), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("pull", ["everywhere", "nowhere", "where uncovered"])
def test_weak_prediction_is_pulled_to_the_fill_only_where_no_mask_covers(pull):
    """Step 6 with leak weights near 0 (a prediction close to the bootstrap background).

    Where no mask covers a pixel (no background prompt) the small total weight lets the fill show through;
    where the masks add up to 1 the authors normalise by the summed weights, so the prediction survives and
    the fill appears only where den = 0. Painting over a picture pulls everywhere (`pull_to_fill` None).
    """
    mask = torch.zeros(8, 8)
    mask[2:6, 2:6] = 1.0
    weak = bootstrap_background((4, 8, 8), 0) + 0.1  # leak 0.01: weight 2·sigmoid(0.05) − 1 ≈ 0.025

    class Weak:
        def predict_x0(self, x, table, step, items):
            return weak[None].expand_as(x).clone()

    top = torch.zeros(1, 8, 8, dtype=torch.bool)
    top[:, :4] = True  # uncovered: the top half (of the region: rows 2-3)
    per_step = {"everywhere": None, "nowhere": (False,) * TABLE.steps, "where uncovered": (top,) * TABLE.steps}[pull]
    setup = dataclasses.replace(setup_for(mask, bootstrap_steps=1), pull_to_fill=per_step)
    _, x1, _ = next(iter(sample(Weak(), setup, torch.zeros(1, 4, 8, 8), [torch.Generator().manual_seed(0)])))
    generator = torch.Generator().manual_seed(0)
    torch.randn((4, 8, 8), generator=generator)  # the bootstrap eps
    x0 = (x1[0] - TABLE.noise[1] * torch.randn((4, 8, 8), generator=generator)) / TABLE.signal[1]
    inside, outside = x0[:, 2:6, 2:6], x0[:, :2, :]
    torch.testing.assert_close(outside, torch.full_like(outside, -1.0), atol=1e-4, rtol=1e-4)  # den = 0: the fill
    weight = 2.0 * torch.sigmoid(torch.tensor(0.01 / 0.2)) - 1.0
    pulled = weight * weak[:, 2:6, 2:6] + (1.0 - weight) * -1.0
    expected = {"everywhere": pulled, "nowhere": weak[:, 2:6, 2:6],
                "where uncovered": torch.cat([pulled[:, :2], weak[:, 4:6, 2:6]], dim=1)}[pull]
    torch.testing.assert_close(inside, expected, atol=1e-3, rtol=1e-4)
    assert (weak[:, 2:6, 2:6] - pulled).abs().mean() > 0.5  # the two rules are far apart here


def test_last_stochastic_step_returns_the_clean_fused_x0():
    mask = torch.ones(8, 8)
    results = list(sample(RecordingDenoiser(3.0), setup_for(mask, bootstrap_steps=0), torch.randn(2, 4, 8, 8),
                          [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]))
    stats, final, _ = results[-1]
    assert torch.equal(final, torch.full_like(final, 3.0))
    assert stats.batch_items == 2 and stats.network_calls == 1  # two images share one batch


class WindowFunction:
    """x0 as a fixed non-linear function of each window's content and its region: what a network is to
    the sampler. Rolls inside the window make the result depend on where each pixel sits in its window."""

    def predict_x0(self, x, table, step, items):
        region = items.cond["id"].view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        return torch.tanh(x) * (1.0 + 0.1 * region) + 0.05 * x.roll(1, dims=-1) - 0.02 * x.roll(2, dims=-2)


def wrapped_run(quantized: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """The final latent of a deterministic render on a canvas that wraps both ways (tile 8, stride 4)."""
    steps, regions = quantized.shape[:2]
    grid = tile_grid(*quantized.shape[-2:], 8, 4, wrap=(True, True))
    plan, weights = planned_steps(quantized, grid, "default", 8, torch.device("cpu"))
    table = StepTable(timesteps=(900, 500, 200), signal=(0.2, 0.6, 0.9, 1.0), noise=(0.98, 0.8, 0.44, 0.0),
                      mask_levels=(0.98, 0.8, 0.44, 0.0), stochastic=False)
    setup = FusionSetup(
        table=table, masks=torch.from_numpy(quantized), plan=plan, weights=weights,
        cond={"id": torch.arange(regions, dtype=torch.float32)[:, None]}, uncond=None, guidance=torch.ones(regions),
        fill=torch.zeros(1, 4, 1, 1), white=torch.ones(1, 4, 1, 1), base=None, bootstrap_steps=0,
        bootstrap_mix=1.0, leak_sensitivity=0.2, max_batch=5, pairs_total=len(grid) * regions,
    )
    *_, (_, final, _) = sample(WindowFunction(), setup, x, [torch.Generator().manual_seed(0)])
    return final


def test_a_wrapped_canvas_is_equivariant_under_rolls_of_the_masks_and_the_noise():
    """Rolling the masks and the initial noise by whole strides rolls the result: no edge is special."""
    rng = np.random.default_rng(3)
    height, width = 16, 24
    masks = np.zeros((3, 2, height, width), np.float32)  # (n, R, h, w)
    masks[:, 0, 10:16, 18:24] = masks[:, 0, 0:3, 0:4] = 1.0  # region 0 crosses the corner
    masks[:, 1] = rng.random((height, width)) > 0.6
    x = torch.randn(1, 4, height, width, generator=torch.Generator().manual_seed(1))
    shift = (4, 8)  # latent pixels, whole strides
    rolled = wrapped_run(np.roll(masks, shift, axis=(-2, -1)), torch.roll(x, shift, dims=(-2, -1)))
    expected = torch.roll(wrapped_run(masks, x), shift, dims=(-2, -1))
    torch.testing.assert_close(rolled, expected, atol=1e-6, rtol=0)
    assert rolled.abs().mean() > 0.1  # the regions painted something

