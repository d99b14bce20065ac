"""The jobs of a render call: scenes × seeds, a `--shard K/N` share of them, and their output files.

One function plans a call for every command that renders (`render`, the multi-process launch,
`watch`): which (scene, seed) jobs this process renders, grouped per scene so a scene's seeds share
batches, with every output file of the whole call checked before any model loads. The plan depends
only on its inputs, so processes that compute it independently agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from semanticdraw_cli import outputs
from semanticdraw_cli.errors import Problem, SceneError
from semanticdraw_cli.scene import Scene


@dataclass(frozen=True)
class Job:
    """One scene's seeds, rendered together."""

    label: str  # the scene file as given
    scene: Scene
    seeds: tuple[int, ...]

    def as_output_job(self) -> outputs.Job:
        return self.label, self.scene, self.seeds


@dataclass(frozen=True)
class JobPlan:
    jobs: tuple[Job, ...]  # this share of the call, in call order
    total: int  # (scene, seed) jobs of the whole call
    outputs: tuple[outputs.PlannedImage, ...]  # the files this share writes


def image_seeds(scene: Scene) -> list[int]:
    """Image k of a scene uses seed + k, and is written as NAME-(seed + k)."""
    return [scene.sampler.seed + k for k in range(scene.sampler.images)]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`K/N` -> (K, N); SceneError naming the option when it is not 1 <= K <= N."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index = count = 0
    if not (count >= 1 and 1 <= index <= count):
        raise SceneError([Problem("--shard", "", f"{text!r}: expected K/N with 1 <= K <= N, e.g. --shard 2/4")])
    return index, count


def select(scenes: Sequence[tuple[str, Scene]], shard: tuple[int, int] | None = None) -> list[Job]:
    """(label, scene) pairs -> jobs; a shard takes every N-th (scene, seed) job in a fixed order."""
    flat = [(position, seed) for position, (_, scene) in enumerate(scenes) for seed in image_seeds(scene)]
    if shard is not None:
        index, count = shard
        flat = [job for n, job in enumerate(flat) if n % count == index - 1]
    grouped: dict[int, list[int]] = {}
    for position, seed in flat:
        grouped.setdefault(position, []).append(seed)
    return [Job(scenes[p][0], scenes[p][1], tuple(seeds)) for p, seeds in grouped.items()]


def images(jobs: Sequence[Job]) -> list[tuple[int, int]]:
    """(job index, seed) of every image of `jobs`, in call order: the unit a launch splits."""
    return [(n, seed) for n, job in enumerate(jobs) for seed in job.seeds]


def regroup(jobs: Sequence[Job], share: Sequence[tuple[int, int]]) -> list[Job]:
    """The jobs of a share of `images(jobs)`: the seeds of one job stay one job (one batch), in order."""
    grouped: dict[int, list[int]] = {}
    for n, seed in share:
        grouped.setdefault(n, []).append(seed)
    return [Job(jobs[n].label, jobs[n].scene, tuple(seeds)) for n, seeds in grouped.items()]


def plan_call(
    scenes: Sequence[tuple[str, Scene]], out_dir: Path, overwrite: bool, shard: tuple[int, int] | None = None
) -> JobPlan:
    """This share's jobs and their outputs; clashes are checked over the whole call (another share
    writes the other file), existing files and the output folder over this share (OutputError)."""
    every = select(scenes)
    jobs = select(scenes, shard)
    planned = outputs.plan_render(
        [job.as_output_job() for job in jobs], out_dir, overwrite, call=[job.as_output_job() for job in every]
    )
    return JobPlan(tuple(jobs), sum(len(job.seeds) for job in every), tuple(planned))
