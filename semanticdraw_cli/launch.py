"""`render` under a launcher (`accelerate launch`, `torchrun`): the call's images split between processes.

Every process plans the whole call (`jobs.plan_call`, deterministic: all agree) and checks every output
before any process renders; `jobs.shares` then gives each a contiguous run of the call's jobs. A job is
one batch (`jobs.select`: up to `sampler.max_batch` seeds of one scene; lowered when there are fewer
batches than processes), so each process renders the batches one process would render from the scene
its PNGs embed: the same pixels. Each process renders its share with the job loop of a plain render
(`job_loop.run`), its models loaded once on `PartialState().device`, and notes each image in the store.

Two collective points, both a `gather_object` of every process's `Status`: after planning (a problem on
any process stops all of them before a model loads) and at the end (the main process gets every image
for the summary, or the failure to report; from the store when a process died). A process that fails in
between sets a key in the process group's store; the others see it after their current step and stop
there. architecture.md §8."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from semanticdraw_cli import jobs
from semanticdraw_cli.launch_status import LaunchFailure, Outcome, Status, describe, digest, listed, raise_failure
from semanticdraw_cli.errors import Problem, RenderError, SceneError

SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")  # torchrun, MPI
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
STOP_KEY = "semanticdraw/stop"  # set in the process group's store by a process that failed
IMAGES_KEY = "semanticdraw/images"  # /RANK: images a process wrote; /RANK/N: the N-th one's --json entry
ENDED_KEY = "semanticdraw/ended"  # /RANK: set by a process that reached the final exchange
TIMEOUT = timedelta(hours=24)  # the longest a process waits at a collective point for the slowest one
DEVICES = (None, "auto", "cpu", "cuda")  # --device values that leave each process its own device


def launched(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a launcher started this process as one of several (WORLD_SIZE, or MPI's size, above 1)."""
    return any(_int(environ.get(name)) > 1 for name in SIZE_VARIABLES)


def main_process(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process reports the call: not launched, or rank 0 (known before any group forms)."""
    return not launched(environ) or all(_int(environ.get(name)) == 0 for name in RANK_VARIABLES)


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

    plan: Callable[[int], jobs.JobPlan]  # (processes) -> the call's plan: loads the scenes, checks every output
    output: Path
    device: str | None
    dtype: str | None
    quiet: bool
    explain: Callable[[BaseException], tuple[int, str]]  # a failure -> (exit code, message)
    entry: Callable[[Any], dict]  # a RenderResult -> its entry in the --json summary
    debug: bool = False  # print the traceback of a failure on the process where it happened
    progress: str = "auto"  # --progress: bars, lines, jsonl or none (cli.progress)


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
    """Another process failed, or the launcher ended: this one stops between steps (the reason)."""


class Group:
    """This process's view of the launch: accelerate's PartialState, the exchange, the stop flag."""

    store_lost = False  # the store failed once: the launcher that held it ended

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
        self._ask(lambda store: store.set(STOP_KEY, str(self.rank)))

    def stopped(self) -> str | None:
        """Why this process must stop between steps: another process failed, or the store is gone (the
        launcher that held it ended); None to go on."""
        failed = self._ask(lambda store: store.get(STOP_KEY).decode() if store.check([STOP_KEY]) else None)
        if self.store_lost:
            return "it lost the launcher's store (the launcher ended?)"
        return None if failed is None else f"process {failed} failed"

    def record(self, job: jobs.Job, entry: dict) -> None:
        """Note an image written in the store, for the main process to report should this one die."""
        image = json.dumps({"job": job.label, "entry": entry})

        def note(store) -> None:
            count = store.add(f"{IMAGES_KEY}/{self.rank}", 1)
            store.set(f"{IMAGES_KEY}/{self.rank}/{count}", image)

        self._ask(note)

    def recorded(self, rank: int) -> tuple[list[dict], bool] | None:
        """({"job": label, "entry": its --json entry} of each image process `rank` recorded, whether it reached
        the final exchange); None without a store."""
        def read(store) -> tuple[list[dict], bool]:
            count = store.add(f"{IMAGES_KEY}/{rank}", 0)
            images = [json.loads(store.get(f"{IMAGES_KEY}/{rank}/{n}")) for n in range(1, count + 1)]
            return images, store.check([f"{ENDED_KEY}/{rank}"])

        return self._ask(read)

    def reached_the_end(self) -> None:
        self._ask(lambda store: store.set(f"{ENDED_KEY}/{self.rank}", "1"))

    def _ask(self, question: Callable[[Any], Any]) -> Any:
        """The store's answer; None without a store, or once it failed (then it is not asked again: each
        failure makes torch log a warning)."""
        if self.store is None:
            return None
        try:
            return question(self.store)
        except RuntimeError:
            self.store, self.store_lost = None, True
            return None

    def close(self) -> None:
        self.state.destroy_process_group()


def render(call: Call) -> Outcome | None:
    """Render this process's share; the main process returns the launch's `Outcome`, the others None.
    Failures raise LaunchFailure, which the main process reports (with the images written and the jobs left)."""
    signal.signal(signal.SIGTERM, _terminated)  # a launcher ending us: temporaries are removed on the way out
    group = Group(call.device)
    try:
        # 1. Plan and check the outputs on every process; nothing renders until all of them agree
        plan, status = _plan(group, call)
        raise_failure(group.exchange(status), planning=True, main=group.is_main)
        if not plan.jobs:
            return Outcome(plan, [], []) if group.is_main else None
        runs = jobs.shares(plan.jobs, group.size)
        # 2. Render this share; a failure elsewhere stops it between steps
        status = _render_share(group, call, plan, runs[group.rank])
        # 3. Every process's images and jobs left reach the main process, which reports them or the failure
        statuses = _final_exchange(group, status, runs)
        raise_failure(statuses, planning=False, main=group.is_main)
        entries = [entry for status in statuses for entry in status.entries]
        return Outcome(plan, entries, [result for status in statuses for result in status.results]) \
            if group.is_main else None
    except LaunchFailure:
        raise
    except (Exception, KeyboardInterrupt) as error:  # interrupted while planning: no process prints but the main one
        code, message = call.explain(error)
        raise LaunchFailure(message, code, group.is_main) from error
    finally:
        group.close()


def _final_exchange(group: Group, status: Status, runs: list[list[jobs.Job]]) -> list[Status]:
    """Every process's final status; when a process is gone (killed, crashed), what the store says it wrote."""
    group.reached_the_end()
    try:
        return group.exchange(status)
    except RenderError as lost:
        if not group.is_main:
            raise LaunchFailure(str(lost), 1, main=False) from lost
        statuses = []
        for rank, run in enumerate(runs):
            if rank == group.rank:
                statuses.append(status)
                continue
            recorded = group.recorded(rank)
            images, ended = recorded if recorded is not None else ([], False)
            written = {(image["job"], image["entry"]["seed"]) for image in images}
            left = [jobs.Job(job.label, job.scene, seeds) for job in run
                    if (seeds := tuple(seed for seed in job.seeds if (job.label, seed) not in written))]
            why = (f"did not answer ({lost})" if recorded is None else "reached the end, then the exchange failed"
                   if ended else "ended before reporting (killed, or it crashed); the launcher's log says why")
            statuses.append(Status(rank, 1, why, describe(left[0]) if left else "",
                                   entries=tuple(image["entry"] for image in images), unfinished=listed(left, rank)))
        return statuses


def _plan(group: Group, call: Call) -> tuple[jobs.JobPlan | None, Status]:
    try:
        if call.device not in DEVICES:
            hint = "pick GPUs with CUDA_VISIBLE_DEVICES or `accelerate launch --gpu_ids`"
            raise SceneError([Problem("--device", "", f"{call.device!r}: under a launcher each process renders on "
                                      "its own device; leave --device out, or pass cpu", hint=hint)])
        if call.device == "cuda" and group.device == "cpu":
            raise RenderError("device 'cuda' requested but CUDA is not available; use --device cpu")
        plan = call.plan(group.size)
    except KeyboardInterrupt:
        raise
    except Exception as error:
        return None, _failure(group, call, "", error)
    return plan, Status(group.rank, digest=digest(plan))


def _render_share(group: Group, call: Call, plan: jobs.JobPlan, mine: list[jobs.Job]) -> Status:
    """Render and write this process's jobs; its status says what it wrote, and why it stopped."""
    from semanticdraw_cli import job_loop
    from semanticdraw_cli.cli.progress import RenderProgress
    from semanticdraw_cli.render import Renderer

    renderer = Renderer(device=group.device, dtype=call.dtype)
    account = job_loop.Account(tuple(mine), lambda result: {**call.entry(result), "process": group.rank})
    if group.is_main and not call.quiet:
        print(_sharing(group.size, plan, mine), file=sys.stderr, flush=True)

    def stop_if_told() -> None:
        if (reason := group.stopped()) is not None:
            raise _Stopped(reason)

    def job_done(job: jobs.Job, seconds: float) -> None:
        if not group.is_main and not call.quiet:
            print(f"process {group.rank}: {describe(job)} written in {seconds:.1f} s", file=sys.stderr, flush=True)

    def written() -> dict:
        results = (dataclasses.replace(result, scene=None, image=None, latent=None) for result in account.results)
        return {"entries": tuple(account.entries), "results": tuple(results),
                "unfinished": listed(account.unfinished(), group.rank)}

    hooks = job_loop.Hooks(between_steps=stop_if_told, written=group.record, job_done=job_done)
    try:
        with RenderProgress(enabled=group.is_main and not call.quiet, scenes=len(mine), mode=call.progress) as progress:
            job_loop.run(renderer, account, job_loop.planned_images(plan), progress, hooks)
    except _Stopped as stopped:
        _ignore_interrupts()
        return Status(group.rank, message=str(stopped), stopped=True, **written())
    except (Exception, KeyboardInterrupt) as error:  # interrupted too: the others stop, all exit 130
        _ignore_interrupts()
        group.stop_others()
        left = account.unfinished()
        return dataclasses.replace(_failure(group, call, describe(left[0]) if left else "", error), **written())
    _ignore_interrupts()
    return Status(group.rank, **written())


def _sharing(processes: int, plan: jobs.JobPlan, mine: list[jobs.Job]) -> str:
    """`2 processes share 8 images in 2 batches; the bars show process 0's 4`, and which processes idle."""
    idle = max(processes - len(plan.jobs), 0)
    line = f"{processes} processes share {len(plan.outputs)} images in {len(plan.jobs)} batches"
    if idle:
        line += f" ({idle} of them {'has' if idle == 1 else 'have'} none: fewer images than processes)"
    return line + f"; the bars show process 0's {sum(len(job.seeds) for job in mine)}"


def _ignore_interrupts() -> None:
    """This process's share is over: a further Ctrl-C or SIGTERM (a launcher passes them on) must not cut
    short the report of what it wrote; the launcher's SIGKILL still ends a process that hangs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _failure(group: Group, call: Call, job: str, error: BaseException) -> Status:
    if call.debug:
        traceback.print_exception(error)
    code, message = call.explain(error)
    return Status(group.rank, code=code, message=message, job=job)


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
