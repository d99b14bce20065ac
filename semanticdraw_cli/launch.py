"""`render` under a launcher (`accelerate launch`, `torchrun`): the call's images split between processes.

Every process plans the whole call (`jobs.plan_call`, deterministic: all agree) and checks every output
before any process renders; `jobs.shares` then gives each a contiguous run of the call's jobs. A job is
one batch (`jobs.select`: up to `sampler.max_batch` seeds of one scene), so each process renders exactly
the batches one process would: the same pixels. Each process renders its share with the job loop of a
plain render (`job_loop.run`), its models loaded once on `PartialState().device`.

Two collective points, both a `gather_object` of every process's `Status`: after planning (a problem on
any process stops all of them before a model loads) and at the end (the main process gets every image
for the summary, or the failure to report). A process that fails in between sets a key in the process
group's store; the others see it after their current step and stop there. architecture.md §7.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from semanticdraw_cli import jobs
from semanticdraw_cli.errors import Problem, RenderError, SceneError

SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")  # torchrun, MPI
STOP_KEY = "semanticdraw/stop"  # set in the process group's store by a process that failed
TIMEOUT = timedelta(hours=24)  # the longest a process waits at a collective point for the slowest one
DEVICES = (None, "auto", "cpu", "cuda")  # --device values that leave each process its own device


def launched(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a launcher started this process as one of several (WORLD_SIZE, or MPI's size, above 1)."""
    return any(_int(environ.get(name)) > 1 for name in SIZE_VARIABLES)


def single_process_hint(environ: Mapping[str, str] = os.environ) -> str | None:
    """What to do when `accelerate launch --cpu --num_processes N` started one process (more need MPI)."""
    if launched(environ) or environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true"):
        return None
    if "MASTER_ADDR" not in environ:  # accelerate sets it only when asked for several processes
        return None
    return ("accelerate launch --cpu started one process (several CPU processes need MPI); to split the images "
            "use `accelerate launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N`")


@dataclass(frozen=True)
class Call:
    """What a launched `render` needs from the command."""

    plan: Callable[[], jobs.JobPlan]  # loads the scenes and checks every output; raises on a problem
    output: Path
    device: str | None
    dtype: str | None
    quiet: bool
    explain: Callable[[BaseException], tuple[int, str]]  # a failure -> (exit code, message)
    entry: Callable[[Any], dict]  # a RenderResult -> its entry in the --json summary
    debug: bool = False  # print the traceback of a failure on the process where it happened


@dataclass(frozen=True)
class Status:
    """What one process reports at a collective point."""

    rank: int
    code: int = 0  # the exit code of its failure; 0: none
    message: str = ""
    job: str = ""  # the job it failed on; "" while planning
    stopped: bool = False  # it stopped because another process failed
    digest: str = ""  # of its plan: every process must plan the same call
    entries: tuple[dict, ...] = ()  # the --json entries of the images it wrote
    results: tuple[Any, ...] = ()  # those images' RenderResults without pixels or scene, for the summary


class LaunchFailure(Exception):
    """The launch failed: one message and exit code for every process; only the main one reports it."""

    def __init__(self, message: str, code: int, main: bool):
        super().__init__(message)
        self.message, self.code, self.main = message, code, main


_joined: list[bool] = []  # one entry once this process joined a process group


def end_process(code: int) -> None:
    """Exit now, skipping the interpreter's finalization, when this process joined a process group.

    Something in the model loading keeps a reference to the gloo process group, so destroying the group
    leaves gloo's worker threads running. The one that ran the last gather can still be releasing that
    gather's tensors when the interpreter shuts down. It then takes the GIL during finalization, which
    aborts the process ("terminate called without an active exception", SIGABRT) instead of letting it
    exit with its code: about one failing launch in eight on the 2-core CPU. Every file is written and
    every message printed by then, so nothing is lost by not finalizing."""
    if _joined:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class _Stopped(Exception):
    """Another process failed: this one stops between steps."""


class Group:
    """This process's view of the launch: accelerate's PartialState, the exchange, the stop flag."""

    def __init__(self, device: str | None):
        import torch
        from accelerate import PartialState

        cpu = device == "cpu" or not torch.cuda.is_available()
        self.state = PartialState(cpu=cpu, timeout=TIMEOUT)
        _joined.append(True)
        self.rank, self.size = self.state.process_index, self.state.num_processes
        self.is_main = self.state.is_main_process
        if self.size == 1:
            raise RenderError("the launcher started several processes but accelerate joined them into no process "
                              "group; start them with `accelerate launch` or `torchrun`")
        self.device = "cpu" if self.state.device.type == "cpu" else str(self.state.device)
        self.store = _store()

    def exchange(self, status: Status) -> list[Status]:
        """Every process's status, in rank order (a barrier: all wait for the slowest)."""
        from accelerate.utils import gather_object

        try:
            return gather_object([status])
        except RuntimeError as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise RenderError(f"process {self.rank} lost the other processes ({reason}); "
                              "the launcher's log says which one ended and why") from error

    def stop_others(self) -> None:
        if self.store is not None:
            try:
                self.store.set(STOP_KEY, str(self.rank))
            except RuntimeError:
                pass

    def stopped(self) -> bool:
        """Whether another process failed (or the store is gone with it)."""
        if self.store is None:
            return False
        try:
            return self.store.check([STOP_KEY])
        except RuntimeError:
            return True

    def close(self) -> None:
        self.state.destroy_process_group()


def render(call: Call, summary: list[dict]) -> tuple[jobs.JobPlan, list[Any]] | None:
    """Render this process's share; the main process returns (the plan, every image's result) and
    fills `summary` (also on failure), the others return None. Failures raise LaunchFailure."""
    signal.signal(signal.SIGTERM, _terminated)  # a launcher ending us: temporaries are removed on the way out
    group = Group(call.device)
    try:
        # 1. Plan and check the outputs on every process; nothing renders until all of them agree
        plan, status = _plan(group, call)
        _raise_failure(group, group.exchange(status), planning=True)
        if not plan.jobs:
            return (plan, []) if group.is_main else None
        mine = jobs.shares(plan.jobs, group.size)[group.rank]
        # 2. Render this share; a failure elsewhere stops it between steps
        statuses = group.exchange(_render_share(group, call, plan, mine))
        # 3. The main process reports every image written, or the failure
        if group.is_main:
            summary.extend(entry for status in statuses for entry in status.entries)
        _raise_failure(group, statuses, planning=False)
        return (plan, [result for status in statuses for result in status.results]) if group.is_main else None
    finally:
        group.close()


def _plan(group: Group, call: Call) -> tuple[jobs.JobPlan | None, Status]:
    try:
        if call.device not in DEVICES:
            hint = "pick GPUs with CUDA_VISIBLE_DEVICES or `accelerate launch --gpu_ids`"
            raise SceneError([Problem("--device", "", f"{call.device!r}: under a launcher each process renders on "
                                      "its own device; leave --device out, or pass cpu", hint=hint)])
        if call.device == "cuda" and group.device == "cpu":
            raise RenderError("device 'cuda' requested but CUDA is not available; use --device cpu")
        plan = call.plan()
    except KeyboardInterrupt:
        raise
    except Exception as error:
        return None, _failure(group, call, "", error)
    return plan, Status(group.rank, digest=_digest(plan))


def _render_share(group: Group, call: Call, plan: jobs.JobPlan, mine: list[jobs.Job]) -> Status:
    """Render and write this process's jobs; its status says what it wrote, and why it stopped."""
    from semanticdraw_cli import job_loop
    from semanticdraw_cli.cli.progress import RenderProgress
    from semanticdraw_cli.render import Renderer

    renderer = Renderer(device=group.device, dtype=call.dtype)
    account = job_loop.Account(tuple(mine), lambda result: {**call.entry(result), "process": group.rank})
    if group.is_main and not call.quiet:
        images = sum(len(item.seeds) for item in mine)
        print(f"{group.size} processes share {len(plan.outputs)} images; the bars show process 0's {images}",
              file=sys.stderr, flush=True)

    def stop_if_told() -> None:
        if group.stopped():
            raise _Stopped

    def job_done(job: jobs.Job, seconds: float) -> None:
        if not group.is_main and not call.quiet:
            print(f"process {group.rank}: {describe(job)} written in {seconds:.1f} s", file=sys.stderr, flush=True)

    def written() -> dict:
        results = (dataclasses.replace(result, scene=None, image=None, latent=None) for result in account.results)
        return {"entries": tuple(account.entries), "results": tuple(results)}

    hooks = job_loop.Hooks(between_steps=stop_if_told, job_done=job_done)
    try:
        with RenderProgress(enabled=group.is_main and not call.quiet, scenes=len(mine)) as progress:
            job_loop.run(renderer, account, job_loop.planned_images(plan), progress, hooks)
    except _Stopped:
        return Status(group.rank, stopped=True, **written())
    except (Exception, KeyboardInterrupt) as error:  # interrupted too: the others stop, all exit 130
        group.stop_others()
        job = account.unfinished()[0] if account.unfinished() else None
        return dataclasses.replace(_failure(group, call, describe(job) if job else "", error), **written())
    return Status(group.rank, **written())


def describe(job: jobs.Job) -> str:
    """`scene.yaml (seeds 7-9)`: a job as a failure names it."""
    seeds = job.seeds
    if len(seeds) == 1:
        return f"{job.label} (seed {seeds[0]})"
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{job.label} (seeds {seeds[0]}-{seeds[-1]})"
    return f"{job.label} (seeds {', '.join(map(str, seeds))})"


def _failure(group: Group, call: Call, job: str, error: BaseException) -> Status:
    if call.debug:
        traceback.print_exception(error)
    code, message = call.explain(error)
    return Status(group.rank, code=code, message=message, job=job)


def _raise_failure(group: Group, statuses: Sequence[Status], planning: bool) -> None:
    """Raise the first failure for every process; the same planning problem everywhere reads as one."""
    failed = [status for status in statuses if status.code]
    if not failed:
        if planning and len({status.digest for status in statuses}) > 1:
            raise LaunchFailure("the processes planned different calls: give every process the same scene files "
                                "and options", 2, group.is_main)
        return
    first = failed[0]
    if planning and len(failed) == len(statuses) and len({status.message for status in failed}) == 1:
        raise LaunchFailure(first.message, first.code, group.is_main)
    where = f"process {first.rank} of {len(statuses)}" + (f" failed on {first.job}" if first.job else "")
    message = f"{where}: {first.message}"
    if len(failed) > 1:
        others = [str(status.rank) for status in failed[1:]]
        message += f"\n({'process' if len(others) == 1 else 'processes'} {', '.join(others)} failed too)"
    raise LaunchFailure(message, first.code, group.is_main)


def _digest(plan: jobs.JobPlan) -> str:
    text = repr([(job.label, job.scene, job.seeds) for job in plan.jobs]) + repr([o.png for o in plan.outputs])
    return hashlib.sha256(text.encode()).hexdigest()


def _store():
    """The process group's key-value store (the launcher's), or None: then others stop at the end only."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()  # no public accessor; checked defensively
    except (AttributeError, RuntimeError, ValueError):
        return None


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
