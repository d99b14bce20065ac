"""Build Scene objects in tests without a scene file; every default comes from `defaults`."""

from __future__ import annotations

import dataclasses

from semanticdraw_cli import defaults as d
from semanticdraw_cli.families import registry
from semanticdraw_cli.scene.types import (
    Accelerator,
    Background,
    Bootstrap,
    Canvas,
    Mask,
    Model,
    Region,
    Sampler,
    Scene,
    Tile,
)


def region(prompt: str, mask: Mask, **overrides) -> Region:
    fields = dict(name=prompt, prompt=prompt, negative=d.NEGATIVE, mask=mask, blur=d.BLUR, strength=d.STRENGTH,
                  prompt_strength=d.PROMPT_STRENGTH)
    return Region(**{**fields, **overrides})


def rect(x: float, y: float, w: float, h: float, fractional: bool = False) -> Mask:
    return Mask(kind="rect", coords=(x, y, w, h), fractional=fractional)


def make_scene(width: int, height: int, regions, checkpoint: str = "tiny", background: Background | None = None,
               **sampler_overrides) -> Scene:
    accel = registry.accelerators()["lcm"]
    sampler = Sampler(
        method=d.METHOD,
        steps=accel.steps,
        grid=accel.grid,
        guidance=accel.guidance,
        seed=d.SEED,
        images=d.IMAGES,
        bootstrap=Bootstrap(d.BOOTSTRAP_STEPS, d.BOOTSTRAP_MIX, d.BOOTSTRAP_LEAK_SENSITIVITY),
        mask_mode=d.MASK_MODE,
        tile=Tile(registry.family("sd15").tile_size, registry.family("sd15").tile_stride),
        plan=d.PLAN,
        cover_alpha=d.COVER_ALPHA,
        max_batch=d.MAX_BATCH,
    )
    sampler = dataclasses.replace(sampler, **sampler_overrides)
    model = Model("sd15", checkpoint, Accelerator("lcm", accel.lora, accel.weight_name, d.LORA_WEIGHT))
    return Scene(name="test", canvas=Canvas(width, height), model=model, sampler=sampler,
                 background=background or Background(), regions=tuple(regions))
