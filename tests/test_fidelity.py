"""The fusion sampler puts each region where its mask is, with no seams at window borders (architecture.md §4).

An oracle denoiser returns, for every item, a constant latent that depends only on the item's prompt,
plus a small multiple of its input (so a window read or written at the wrong place, or a bootstrap
roll not undone, shows): x0 = c_r + λ·x_in. The fused canvas is then a pure function of the masks:
where exactly one region is active at the last step, a pixel holds c_r + λ·x; where several are, the
mask-weighted mean of their values (tile weights sum to 1 per region). Run on the Irworobongdo layout (nine prompt-mask pairs, three windows)
with bootstrapping on, for every plan.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from semanticdraw_cli import masks as mask_math
from semanticdraw_cli.fusion import FusionSetup, sample
from semanticdraw_cli.plan import planned_steps
from semanticdraw_cli.schedule import StepTable, initial_latents
from semanticdraw_cli.plan import plan_step
from semanticdraw_cli.render import region_masks
from semanticdraw_cli.tiles import tile_grid

SCENE = Path(__file__).resolve().parents[1] / "scenes" / "irworobongdo.yaml"
LCM_TIMESTEPS = (999, 919, 759, 499, 259)  # steps (0, 4, 12, 25, 37) of the 50-step LCM grid
CHANNELS = 4
LAMBDA = 0.01  # how much of its input the oracle echoes
WHITE = torch.full((1, CHANNELS, 1, 1), -7.0)  # fill where no region contributes (never, with a background prompt)


def lcm_levels() -> tuple[list[float], list[float]]:
    """(signal, noise) of SD1.5's scaled-linear schedule at the LCM timesteps, with s_n = 0 appended.

    The noise levels are [0.9977, 0.9942, 0.9735, 0.8499, 0.5840, 0]: the last step's level stays above
    cover_alpha (0.3), so a region under another one drops out there, as the method intends.
    """
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    alphas = np.cumprod(1.0 - betas)
    signal = [float(np.sqrt(alphas[t])) for t in LCM_TIMESTEPS] + [1.0]
    noise = [float(np.sqrt(1.0 - alphas[t])) for t in LCM_TIMESTEPS] + [0.0]
    return signal, noise


def constants(regions: int) -> torch.Tensor:
    """A distinct constant latent per region, (R, C): far apart, and far from the bootstrap background."""
    r = torch.arange(regions, dtype=torch.float32)[:, None]
    return torch.cat([3.0 + r, -2.0 - 0.5 * r, 5.0 - r, 1.0 + 2.0 * r], dim=1)


class OracleDenoiser:
    """x0 = c_r + λ·x_in for the item's prompt id r; the guidance branch predicts 0."""

    def __init__(self, values: torch.Tensor):
        self.values = values  # (R, C)
        self.calls: list[tuple[int, int]] = []  # (step, batch items)

    def predict_x0(self, x, table, step, items) -> torch.Tensor:
        assert x.shape[0] == items.cond["id"].shape[0] == len(items.windows) == len(items.guidance)
        assert all((w.height, w.width) == tuple(x.shape[-2:]) for w in items.windows)
        self.calls.append((step, x.shape[0] * (2 if items.uncond is not None else 1)))
        ids = items.cond["id"][:, 0].long()
        out = self.values[ids][:, :, None, None] + LAMBDA * x  # (B, C, wh, ww)
        if items.uncond is not None:  # uncond + g·(cond − uncond) with uncond = 0 is exact at g = 1
            out = items.guidance[:, None, None, None] * out
        return out


@pytest.fixture(scope="module")
def layout():
    """Quantized per-step masks (n, R, h, w) of the Irworobongdo scene, background prompt as region 0."""
    from semanticdraw_cli.scene.loader import load_scene

    scene = load_scene(SCENE)
    assert (scene.canvas.width, scene.canvas.height) == (1280, 768)
    assert len(scene.regions) == 8 and scene.background.prompt is not None  # nine prompt-mask pairs
    signal, noise = lcm_levels()
    latent = mask_math.to_latent(region_masks(scene))  # (8, 96, 160)
    quantized = mask_math.quantize(latent, noise, "discrete", scene.sampler.cover_alpha)
    quantized = mask_math.with_background(quantized)  # (5, 9, 96, 160)
    tile, stride = scene.sampler.tile.size // 8, scene.sampler.tile.stride // 8
    return scene, quantized, signal, noise, tile, stride


def layout_with_levels(layout, noise: list[float]):
    """The same layout quantized against other noise levels (s_0 > ... > s_n = 0)."""
    scene, _, _, _, tile, stride = layout
    latent = mask_math.to_latent(region_masks(scene))
    quantized = mask_math.with_background(mask_math.quantize(latent, noise, "discrete", scene.sampler.cover_alpha))
    return scene, quantized, [float(np.sqrt(1.0 - s * s)) for s in noise], noise, tile, stride


def run(layout, plan: str, steps: int | None = None, bootstrap_steps: int = 1):
    """Constants c_r (R, C) moved to each pixel of the final latent, i.e. final − λ·(the last step's input),
    (C, h, w); the oracle; the last step's masks; the grid. `steps` keeps only the first steps."""
    scene, quantized, signal, noise, tile, stride = layout
    n = steps or len(LCM_TIMESTEPS)
    quantized = quantized[:n]
    table = StepTable(
        timesteps=LCM_TIMESTEPS[:n],
        signal=tuple(signal[:n]) + (1.0,),
        noise=tuple(noise[:n]) + (0.0,),
        mask_levels=tuple(noise[:n]) + (0.0,),
        stochastic=True,
    )
    regions, height, width = quantized.shape[1:]
    grid = tile_grid(height, width, tile, stride)
    plans, weights = planned_steps(quantized, grid, plan, tile, torch.device("cpu"))
    ids = {"id": torch.arange(regions, dtype=torch.float32)[:, None]}  # (R, 1) fake "embeddings"
    setup = FusionSetup(
        table=table,
        masks=torch.from_numpy(quantized),
        plan=plans,
        weights=weights,
        cond=ids,
        uncond={"id": torch.zeros(regions, 1)} if plan == "reference" else None,  # reference doubles the batch
        guidance=torch.ones(regions),
        fill=WHITE,
        white=WHITE,
        base=None,
        bootstrap_steps=bootstrap_steps,
        bootstrap_mix=1.0,
        leak_sensitivity=0.2,
        max_batch=8,
        pairs_total=len(grid) * regions,
        pull_to_fill=(False,) * table.steps,  # a background prompt and no picture, as render sets it here
    )
    oracle = OracleDenoiser(constants(regions))
    generators = [torch.Generator("cpu").manual_seed(2024)]
    x = initial_latents((CHANNELS, height, width), generators, table, None)
    before = x
    for stats, after, _ in sample(oracle, setup, x, generators):
        if stats.step < n - 1:
            before = after
    return (after - LAMBDA * before)[0], oracle, quantized[-1], grid


def expected_canvas(last_masks: np.ndarray, values: torch.Tensor) -> np.ndarray:
    """Σ_r M_r·c_r / Σ_r M_r per pixel, (C, h, w)."""
    m = torch.from_numpy(last_masks).double()  # (R, h, w)
    num = torch.einsum("rhw,rc->chw", m, values.double())
    return (num / m.sum(dim=0).clamp_min(1e-12)).numpy()


def labels(canvas: np.ndarray, values: torch.Tensor, atol: float = 1e-4) -> np.ndarray:
    """The region whose constant each pixel holds, -1 where it holds none (a mix), (h, w)."""
    out = np.full(canvas.shape[1:], -1)
    for r, value in enumerate(values.numpy()):
        out[np.abs(canvas - value[:, None, None]).max(axis=0) <= atol] = r
    return out


def mask_labels(last_masks: np.ndarray) -> np.ndarray:
    """argmax of the last step's quantized masks where exactly one region is active, -1 where several are."""
    active = (last_masks > 0).sum(axis=0)
    return np.where(active == 1, last_masks.argmax(axis=0), -1)


PLANS = ("default", "reference", "regions")


@pytest.mark.parametrize("plan", PLANS)
def test_each_latent_pixel_holds_its_regions_constant(layout, plan):
    canvas, oracle, last, _ = run(layout, plan)
    values = oracle.values
    assert torch.isfinite(canvas).all()
    got, want = labels(canvas.numpy(), values), mask_labels(last)
    assert (want >= 0).mean() > 0.97  # the layout is mostly single-region at the last step
    for r in range(len(values)):
        inter = np.logical_and(got == r, want == r).sum()
        union = np.logical_or(got == r, want == r).sum()
        assert union > 0, f"region {r} vanished"
        assert inter / union >= 0.98, f"plan {plan}: region {r} IoU {inter / union:.4f}"
    # stronger: every pixel, mixed ones included, is exactly the mask-weighted mean of the constants
    np.testing.assert_allclose(canvas.numpy(), expected_canvas(last, values), atol=1e-5, rtol=0)


@pytest.mark.parametrize("plan", PLANS)
def test_no_seams_at_window_borders(layout, plan):
    canvas, oracle, last, grid = run(layout, plan)
    values, height, width = oracle.values.numpy(), canvas.shape[1], canvas.shape[2]
    want = mask_labels(last)
    # the columns on both sides of every inner window edge (tile grid edges, and the regions plan's own)
    _, _, _, _, tile, _ = layout
    windows = {p.window for step in [plan_step(last, grid, plan, tile)] for p in step}
    edges = {w.left for w in windows if w.left > 0} | {w.right for w in windows if w.right < width}
    assert edges, "the canvas should need several windows"
    for x in sorted(edges):
        for column in (x - 1, x):
            rows = want[:, column] >= 0
            expected = values[want[rows, column]].T  # (C, rows) the interior value of each pixel's region
            np.testing.assert_allclose(canvas.numpy()[:, rows, column], expected, atol=1e-5, rtol=0,
                                       err_msg=f"plan {plan}: seam at latent column {column}")
    assert height == 96 and width == 160


def test_bootstrap_step_alone_assigns_regions(layout):
    """One bootstrapped step (leak suppression on): single-region pixels hold their region's constant."""
    canvas, oracle, last, _ = run(layout, "default", steps=1)
    got, want = labels(canvas.numpy(), oracle.values), mask_labels(last)
    single = want >= 0
    assert single.mean() > 0.9
    assert (got[single] == want[single]).mean() >= 0.999


def test_default_plan_equals_reference_with_fewer_items(layout):
    default, oracle_default, _, _ = run(layout, "default")
    reference, oracle_reference, _, _ = run(layout, "reference")
    torch.testing.assert_close(default, reference, atol=1e-6, rtol=0)
    items_default = sum(items for _, items in oracle_default.calls)
    items_reference = sum(items for _, items in oracle_reference.calls)
    assert items_reference == 5 * 27 * 2  # every region on every window, guidance branch doubled
    assert items_default < items_reference * 0.4


def test_regions_stay_apart_when_the_last_level_is_below_cover_alpha(layout):
    """A last noise level below cover_alpha (0.3) would bring the mountains back under the waterfalls at the
    last step, a 50/50 mix everywhere (none of their pixels pure); the last step's threshold
    (masks.last_threshold) keeps covered parts out, so only the blurred edge band mixes."""
    low = layout_with_levels(layout, [0.9977, 0.966, 0.86, 0.60, 0.26, 0.0])
    canvas, oracle, last, _ = run(low, "default")
    np.testing.assert_allclose(canvas.numpy(), expected_canvas(last, oracle.values), atol=1e-5, rtol=0)
    # where the LCM schedule's levels put the waterfalls (regions 2, 3), they hold their own constant
    got, want = labels(canvas.numpy(), oracle.values), mask_labels(layout[1][-1])
    for r in (2, 3):
        pure = (got[want == r] == r).mean()
        assert pure >= 0.85, f"region {r}: {pure:.3f} of its pixels pure, the rest mixed with the region under it"
