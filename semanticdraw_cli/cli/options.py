"""The options `render`, `check` and `watch` share (a launched render is `render`), defined once, and the scene
overrides every command builds from its options in one place.

A path typed on the command line (`--model ./dir`, `--set model.checkpoint=./dir`) means a path from the
current folder, while a path written in a scene file means one from the scene's folder: the overrides are
built, with those paths made absolute, once per call, and every load of the call (the first check, a
launch's processes, each reload of `watch`) reads the same list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from semanticdraw_cli import defaults
from semanticdraw_cli.cli.support import command_line_paths

OVERRIDE_KEYS = {  # option -> the scene field it sets
    "seed": "sampler.seed", "images": "sampler.images", "plan": "sampler.plan",
    "model": "model.checkpoint", "compile_": "sampler.compile",
}

Output = Annotated[Path, typer.Option(
    "-o", "--output", help="Folder for the images and their reports (created if missing).")]
Seed = Annotated[Optional[int], typer.Option(
    help="Seed of the first image.", show_default=f"the scene's, else {defaults.SEED}")]
Images = Annotated[Optional[int], typer.Option(
    help="Images per scene, seeds seed..seed+N-1, in batches of sampler.max_batch.",
    show_default=f"the scene's, else {defaults.IMAGES}")]
Shard = Annotated[Optional[str], typer.Option(help="Only the K-th of N shares of the (scene, seed) jobs: K/N.")]
Model = Annotated[Optional[str], typer.Option(
    help="Checkpoint: hub id, folder, .safetensors, or preset tiny|small|full-random. A path here is relative to "
         "the current folder (paths inside a scene file: to the scene's folder).", show_default="the scene's")]
Device = Annotated[Optional[str], typer.Option(
    help="auto, cuda, cuda:N, mps or cpu.", show_default="auto: cuda, then mps, then cpu")]
Dtype = Annotated[Optional[str], typer.Option(
    help="auto, float16, bfloat16 or float32.",
    show_default="auto: float16 on cuda (bfloat16 for flux, klein), else float32")]
Set = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override a field: key.path=value (repeatable).")]
Plan = Annotated[Optional[str], typer.Option(
    help="default | reference | regions.", show_default=f"the scene's, else {defaults.PLAN}")]


def scene_overrides(set_: list[str] | None, **options: object) -> list[str]:
    """`--set` values, then each option given (`seed=3`, `model="./dir"`) as its field's override; command-line
    paths resolved against the current folder. Options left out (None) leave the scene's value."""
    overrides = list(set_ or [])
    for option, value in options.items():
        if value is not None:
            overrides.append(f"{OVERRIDE_KEYS[option]}={value}")
    return command_line_paths(overrides)


Variants = Annotated[str, typer.Option(
    "--variants", help="Prompts with {a|b|c}: pick one option per image from its seed, or render all combinations "
                       "(at most 1024 per seed) as NAME-SEED-vK.png.")]
