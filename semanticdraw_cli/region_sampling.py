"""Per-region seeds and guidance scales: what a region's own `seed` and `guidance` change in a render.

A region's noise is drawn from its seed at canvas size and composed by the z-ordered masks,
so a region's seed moves only what lies under it at step 0. Each draw is seeded afresh from (region seed,
image index, step), never from a generator shared between draws: a region's noise does not depend on
the batching, on the plan or on the other regions' seeds. Without any region seed nothing is composed and
every draw is the image generator's, as before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from semanticdraw_cli.lazy import lazy_module
from semanticdraw_cli.scene.types import Scene

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

OWNER_LEVEL = 0.5  # a region owns a latent pixel where its z-ordered mask is the largest and at least this
INITIAL = -1  # the step index of the initial latent's draw


@dataclass(frozen=True)
class RegionNoise:
    """Which latent pixels take which region's noise, and the seeds that draw it."""

    owner: torch.Tensor  # (h, w) int64 index into `seeds`, -1 where the image's own noise stays
    seeds: tuple[int, ...]  # per seeded region
    images: tuple[int, ...]  # image index per image of the batch (seed − sampler.seed)

    def compose(self, eps: torch.Tensor, step: int) -> torch.Tensor:
        """(N, C, h, w) noise with each owned pixel replaced by its region's own draw for this step."""
        out = eps.clone()
        shape = tuple(eps.shape[1:])
        for index, seed in enumerate(self.seeds):
            where = (self.owner == index).to(eps.device)  # (h, w)
            if not bool(where.any()):
                continue
            for k, image in enumerate(self.images):
                generator = torch.Generator("cpu").manual_seed(draw_seed(seed, image, step))
                own = torch.randn(shape, generator=generator).to(eps.device)
                out[k] = torch.where(where, own, out[k])
        return out


def draw_seed(seed: int, image: int, step: int) -> int:
    """A 63-bit seed for one draw of a region: (region seed, image index, step) hashed, so draws never overlap."""
    text = f"{seed}:{image}:{step}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def region_noise(scene: Scene, latent_masks: np.ndarray, seeds: tuple[int, ...]) -> RegionNoise | None:
    """The noise composition of a scene's region seeds over (R, h, w) z-ordered latent masks; None without any."""
    seeded = [r for r, region in enumerate(scene.regions) if region.seed is not None]
    if not seeded:
        return None
    top = latent_masks.argmax(axis=0)  # (h, w) the region on top
    strong = latent_masks.max(axis=0) >= OWNER_LEVEL
    owner = np.full(top.shape, -1, np.int64)
    for index, r in enumerate(seeded):
        owner[strong & (top == r)] = index
    return RegionNoise(
        torch.from_numpy(owner), tuple(scene.regions[r].seed for r in seeded),
        tuple(seed - scene.sampler.seed for seed in seeds),
    )


def guidance_scales(scene: Scene) -> list[float]:
    """Guidance per region row of the sampler: the background prompt's (row 0, if any) is sampler.guidance."""
    scales = [r.guidance if r.guidance is not None else scene.sampler.guidance for r in scene.regions]
    return [scene.sampler.guidance, *scales] if scene.background.prompt is not None else scales
