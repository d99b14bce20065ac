"""The jobs of a render call: scenes × seeds, a `--shard K/N` share of them, and their output files.

One function plans a call for every command that renders (`render`, the multi-process launch,
`watch`): which (scene, seed) jobs this process renders, grouped per scene into batches that share
UNet calls, with every output file of the whole call checked before any model loads. The plan depends
only on its inputs, so processes that compute it independently agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from semanticdraw_cli import defaults, outputs
from semanticdraw_cli.errors import Problem, SceneError
from semanticdraw_cli.scene.types import Scene


@dataclass(frozen=True)
class Job:
    """Seeds of one scene rendered together: one batch."""

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
    """(label, scene) pairs -> jobs; a shard takes every N-th (scene, seed) job in a fixed order.

    A scene's seeds (of the share) are rendered in batches of `sampler.max_batch` images: each batch is
    one job, so every UNet call of a full batch is full, memory stays bounded, and a launch that hands
    whole jobs to its processes renders exactly the batches, hence the pixels, of one process.
    """
    flat = [(position, seed) for position, (_, scene) in enumerate(scenes) for seed in image_seeds(scene)]
    if shard is not None:
        index, count = shard
        flat = [job for n, job in enumerate(flat) if n % count == index - 1]
    grouped: dict[int, list[int]] = {}
    for position, seed in flat:
        grouped.setdefault(position, []).append(seed)
    batches = []
    for position, seeds in grouped.items():
        label, scene = scenes[position]
        size = _batch_size(scene)
        batches += [Job(label, scene, tuple(seeds[start : start + size])) for start in range(0, len(seeds), size)]
    return batches


def plan_call(
    scenes: Sequence[tuple[str, Scene]], out_dir: Path, overwrite: bool, shard: tuple[int, int] | None = None,
    processes: int = 1,
) -> JobPlan:
    """This share's jobs and their outputs; clashes are checked over the whole call (another share
    writes the other file), existing files and the output folder over this share (OutputError).
    With fewer batches than `processes`, the batches are made smaller (`smaller_batches`) so that each
    process gets one, as far as there are images."""
    every = select(scenes)
    jobs = select(scenes, shard)
    if len(jobs) < processes:
        jobs = select(smaller_batches(scenes, shard, processes), shard)
    planned = outputs.plan_render(
        [job.as_output_job() for job in jobs], out_dir, overwrite, call=[job.as_output_job() for job in every]
    )
    return JobPlan(tuple(jobs), sum(len(job.seeds) for job in every), tuple(planned))


def smaller_batches(
    scenes: Sequence[tuple[str, Scene]], shard: tuple[int, int] | None, processes: int
) -> list[tuple[str, Scene]]:
    """The scenes with `sampler.max_batch` lowered so that each of `processes` gets a batch (as far as there
    are images): to the size whose largest share is smallest, the largest such size, since larger batches
    use the device better. A scene whose batch is lowered says so in every PNG it writes, so rendering the
    embedded scene in one process renders the same batches: the same pixels."""
    candidates = []  # (images of the largest share, -size): the smallest wins
    for size in range(1, max(_batch_size(scene) for _, scene in scenes) + 1):
        batches = select([(label, _with_batch(scene, size)) for label, scene in scenes], shard)
        if len(batches) >= processes or size == 1:
            largest_share = max(sum(len(job.seeds) for job in run) for run in shares(batches, processes))
            candidates.append((largest_share, -size))
    size = -min(candidates)[1]
    return [(label, _with_batch(scene, size)) for label, scene in scenes]


def _batch_size(scene: Scene) -> int:
    size = scene.sampler.max_batch
    return size if isinstance(size, int) else defaults.AUTO_BATCH_OFF_CUDA  # auto: jobs stay bounded


def _with_batch(scene: Scene, size: int) -> Scene:
    if _batch_size(scene) <= size:
        return scene
    return dataclasses.replace(scene, sampler=dataclasses.replace(scene.sampler, max_batch=size))


def shares(batches: Sequence[Job], processes: int) -> list[list[Job]]:
    """A contiguous run of the batches per process, the first processes taking one more when uneven
    (as accelerate's `split_between_processes`); every process can compute every share."""
    per, extra = divmod(len(batches), processes)
    runs, start = [], 0
    for rank in range(processes):
        end = start + per + (1 if rank < extra else 0)
        runs.append(list(batches[start:end]))
        start = end
    return runs
