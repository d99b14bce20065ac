"""The one loop that renders a call's jobs: `render` runs it, and so does each process of a launch.

Each job (one batch: seeds of one scene, `jobs.select`) is rendered by one `Renderer`, which keeps the
models between jobs; its images are written one by one to the files planned for them (`jobs.plan_call`,
the call's only output planning), and the `Account` is updated after each image, so a failure at any
point (an interrupt, a full disk, a process that stops) can report exactly the images on disk and the
seeds left unrendered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.jobs import Job, JobPlan
from semanticdraw_cli.outputs import PlannedImage, write_result
from semanticdraw_cli.render import Renderer, RenderResult


@dataclass
class Account:
    """What a call wrote, image by image, and what it has left."""

    jobs: tuple[Job, ...]  # this process's jobs, in order
    entry: Callable[[RenderResult], dict]  # an image written -> its --json entry
    entries: list[dict] = field(default_factory=list)  # of the images written, in order
    results: list[RenderResult] = field(default_factory=list)
    _written: set[tuple[str, int]] = field(default_factory=set)  # (job label, seed)

    def add(self, job: Job, result: RenderResult) -> dict:
        self._written.add((job.label, result.seed))
        self.entries.append(self.entry(result))
        self.results.append(result)
        return self.entries[-1]

    def left(self) -> list[dict]:
        """The unfinished jobs as the --json document lists them."""
        return [{"scene": job.label, "seeds": list(job.seeds)} for job in self.unfinished()]

    def unfinished(self) -> list[Job]:
        """The jobs not wholly written, each with only the seeds it has left."""
        left = []
        for job in self.jobs:
            seeds = tuple(seed for seed in job.seeds if (job.label, seed) not in self._written)
            if seeds:
                left.append(Job(job.label, job.scene, seeds))
        return left


@dataclass(frozen=True)
class Hooks:
    """What a command adds to the loop; every member is optional."""

    between_steps: Callable[[], None] | None = None  # called at each step and phase; raises to stop the render
    score: Callable[[list[RenderResult]], None] | None = None  # fills each result's report before it is written
    written: Callable[[Job, dict], None] | None = None  # an image's job and --json entry, once its files are written
    job_done: Callable[[Job, float], None] | None = None  # a job and its seconds, once all its images are written
    warning: Callable[[Job, str], None] | None = None  # a job and each warning its render reports


def planned_images(plan: JobPlan) -> dict[tuple[str, int], PlannedImage]:
    """(job label, seed) -> the files planned for that image."""
    return {(image.label, image.seed): image for image in plan.outputs}


def run(renderer: Renderer, account: Account, planned: dict[tuple[str, int], PlannedImage], progress: Any,
        hooks: Hooks = Hooks()) -> None:
    """Render and write every job of `account`; `progress` shows it (`cli.progress.RenderProgress`)."""
    check = hooks.between_steps or (lambda: None)

    def on_step(*step) -> None:
        check()
        progress.on_step(*step)

    def on_phase(*phase) -> None:
        check()
        progress.on_phase(*phase)

    for job in account.jobs:
        start = time.perf_counter()
        progress.start_scene(job.scene.name, list(job.seeds))
        done = renderer.render(job.scene, None, seeds=list(job.seeds), on_step=on_step, on_phase=on_phase,
                               on_call=progress.on_call)
        for warning in done[0].report.get("warnings", []) if hooks.warning is not None else []:
            hooks.warning(job, warning)
        if hooks.score is not None:
            hooks.score(done)
        progress.on_phase("writing", 0, None)
        for result in done:
            _write(result, planned[(job.label, result.seed)])
            entry = account.add(job, result)
            if hooks.written is not None:
                hooks.written(job, entry)
        progress.finish_scene()
        if hooks.job_done is not None:
            hooks.job_done(job, time.perf_counter() - start)


def _write(result: RenderResult, image: PlannedImage) -> None:
    """Both files of one image, or neither: a report that cannot be written takes its new picture with it.
    RenderError naming the file that failed (the OSError of a full disk names none)."""
    before = _identity(image.png)
    try:
        write_result(result, image.png, image.report)
    except OSError as error:
        failed = image.png
        if _identity(image.png) != before:  # the picture was replaced: its report failed
            failed = image.report
            image.png.unlink(missing_ok=True)
        raise RenderError(f"cannot write {failed}: {error.strerror or error}; free space on that disk or choose "
                          "another folder with -o") from error


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns
