"""Per-region seeds and guidance scales: the noise composition alone, then rendered with the tiny preset."""

import dataclasses

import numpy as np
import pytest
import torch

from semanticdraw_cli.region_sampling import INITIAL, guidance_scales, region_noise
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Background
from scene_factory import make_scene, rect, region


def two_regions(seed_left=None, seed_right=None, **sampler):
    left = region("a red boat", rect(0, 0, 64, 96), seed=seed_left)
    right = region("a lighthouse", rect(64, 0, 64, 96), seed=seed_right)
    return make_scene(128, 96, [left, right], **sampler)


def halves() -> np.ndarray:
    masks = np.zeros((2, 12, 16), np.float32)  # (R, h, w)
    masks[0, :, :8], masks[1, :, 8:] = 1.0, 1.0
    return masks


def test_no_region_seed_composes_nothing():
    assert region_noise(two_regions(), halves(), (0,)) is None


def test_a_seeded_region_replaces_only_the_noise_it_owns():
    noise = region_noise(two_regions(seed_left=7), halves(), (0,))
    eps = torch.zeros(1, 4, 12, 16)
    composed = noise.compose(eps, INITIAL)
    assert (composed[..., 8:] == 0).all()
    assert (composed[..., :8] != 0).all()


def test_a_region_noise_ignores_the_other_regions_seeds_and_the_image_noise():
    one = region_noise(two_regions(seed_left=7), halves(), (0,)).compose(torch.zeros(1, 4, 12, 16), 2)
    other = region_noise(two_regions(seed_left=7, seed_right=9), halves(), (0,)).compose(torch.ones(1, 4, 12, 16), 2)
    assert torch.equal(one[..., :8], other[..., :8])
    assert not torch.equal(one[..., 8:], other[..., 8:])


def test_each_step_and_image_draws_its_own_region_noise():
    noise = region_noise(two_regions(seed_left=7), halves(), (0, 1))
    initial, step = noise.compose(torch.zeros(2, 4, 12, 16), INITIAL), noise.compose(torch.zeros(2, 4, 12, 16), 0)
    assert not torch.equal(initial[0], initial[1])
    assert not torch.equal(initial, step)


def test_guidance_scales_fall_back_to_the_sampler_and_the_background_row_keeps_it():
    scene = two_regions(guidance=2.0)
    scene = dataclasses.replace(scene, regions=(dataclasses.replace(scene.regions[0], guidance=5.0), scene.regions[1]))
    assert guidance_scales(scene) == [5.0, 2.0]
    assert guidance_scales(dataclasses.replace(scene, background=Background(prompt="sky"))) == [2.0, 5.0, 2.0]


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu")


def image(renderer, scene) -> np.ndarray:
    return renderer.render(scene)[0].image


@pytest.mark.slow
def test_region_seed_moves_its_region_and_not_the_far_side(renderer):
    plain, seeded = image(renderer, two_regions()), image(renderer, two_regions(seed_left=11))
    changed = (seeded != plain).any(axis=-1)  # (H, W)
    assert changed[:, :48].mean() > 0.5  # the seeded region is drawn afresh
    assert changed[:, 80:].mean() < changed[:, :48].mean()


@pytest.mark.slow
def test_region_noise_of_an_image_does_not_depend_on_the_images_batched_with_it(renderer):
    scene = two_regions(seed_left=11)
    together, alone = renderer.prepare(scene, [7, 8]).x, renderer.prepare(scene, [8]).x
    assert torch.equal(together[1], alone[0])
    unseeded = renderer.prepare(two_regions(), [8]).x
    owned = (alone[0] != unseeded[0]).any(dim=0)  # (h, w)
    assert owned[:, :8].all() and not owned[:, 8:].any()


@pytest.mark.slow
def test_per_region_guidance_equals_the_global_scale_for_those_regions(renderer):
    scene = two_regions(guidance=1.0, steps=(0, 25))  # two steps: guidance doubles every call
    scaled = dataclasses.replace(scene, regions=tuple(dataclasses.replace(r, guidance=3.0) for r in scene.regions))
    globally = two_regions(guidance=3.0, steps=(0, 25))
    assert np.array_equal(image(renderer, scaled), image(renderer, globally))
    assert not np.array_equal(image(renderer, scaled), image(renderer, scene))
