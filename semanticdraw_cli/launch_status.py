"""What a launch reports: each process's `Status` at a collective point, and the one failure (or outcome)
that the main process reports for all of them, with every image written and every job left. Pure
functions of statuses, so the launch's reporting is tested without processes (launch.py runs them)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from semanticdraw_cli import jobs


@dataclass(frozen=True)
class Status:
    """What one process reports at a collective point."""

    rank: int
    code: int = 0  # the exit code of its failure; 0: none
    message: str = ""
    job: str = ""  # the job it failed on; "" while planning
    stopped: bool = False  # it stopped between steps: another process failed, or the launcher is gone (`message`)
    digest: str = ""  # of its plan: every process must plan the same call
    entries: tuple[dict, ...] = ()  # the --json entries of the images it wrote
    results: tuple[Any, ...] = ()  # those images' RenderResults without pixels or scene, for the summary
    unfinished: tuple[dict, ...] = ()  # its jobs left, as the --json document lists them


class LaunchFailure(Exception):
    """The launch failed: one message and exit code for every process; only the main one reports it, with
    every image written and every job left."""

    def __init__(self, message: str, code: int, main: bool, images: Sequence[dict] = (),
                 unfinished: Sequence[dict] = ()):
        super().__init__(message)
        self.message, self.code, self.main = message, code, main
        self.images, self.unfinished = list(images), list(unfinished)


@dataclass(frozen=True)
class Outcome:
    """A launch that rendered every job, as the main process reports it."""

    plan: jobs.JobPlan
    entries: list[dict]  # the --json entries of every image, in call order
    results: list[Any]  # their RenderResults without pixels or scene


def describe(job: jobs.Job) -> str:
    """`scene.yaml (seeds 7-9)`: a job as a failure names it."""
    seeds = job.seeds
    if len(seeds) == 1:
        return f"{job.label} (seed {seeds[0]})"
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{job.label} (seeds {seeds[0]}-{seeds[-1]})"
    return f"{job.label} (seeds {', '.join(map(str, seeds))})"


def listed(left: Sequence[jobs.Job], rank: int) -> tuple[dict, ...]:
    """Jobs left, as the --json document lists them."""
    return tuple({"scene": job.label, "seeds": list(job.seeds), "process": rank} for job in left)


def raise_failure(statuses: Sequence[Status], planning: bool, main: bool) -> None:
    """Raise the first failure for every process, with every image written and every job left; the same
    planning problem everywhere reads as one. A process that stopped without one failing (the launcher
    ended) fails the launch too: its jobs are left."""
    images = [entry for status in statuses for entry in status.entries]
    unfinished = [job for status in statuses for job in status.unfinished]
    failed = [status for status in statuses if status.code]
    if not failed:
        if planning and len({status.digest for status in statuses}) > 1:
            raise LaunchFailure("the processes planned different calls: give every process the same scene files "
                                "and options", 2, main)
        stopped = [status for status in statuses if status.stopped]
        if stopped or unfinished:
            where = f"process {stopped[0].rank} of {len(statuses)} stopped: {stopped[0].message}" if stopped else \
                "the launch ended"
            raise LaunchFailure(f"{where}; {len(unfinished)} jobs did not finish", 1, main, images, unfinished)
        return
    first = failed[0]
    if planning and len(failed) == len(statuses) and len({status.message for status in failed}) == 1:
        raise LaunchFailure(first.message, first.code, main)
    where = f"process {first.rank} of {len(statuses)}" + (f" failed on {first.job}" if first.job else "")
    message = f"{where}: {first.message}"
    if len(failed) > 1:
        others = [str(status.rank) for status in failed[1:]]
        message += f"\n({'process' if len(others) == 1 else 'processes'} {', '.join(others)} failed too)"
    raise LaunchFailure(message, first.code, main, images, unfinished)


def digest(plan: jobs.JobPlan) -> str:
    text = repr([(job.label, job.scene, job.seeds) for job in plan.jobs]) + repr([o.png for o in plan.outputs])
    return hashlib.sha256(text.encode()).hexdigest()
