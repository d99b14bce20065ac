"""Terminal feedback for `render`: rich progress bars on a terminal, plain lines elsewhere (a log, CI, a pipe),
and a summary table at the end; all on stderr, so that `--json` keeps stdout to itself."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from semanticdraw_cli.defaults import PROGRESS_NOTE_SECONDS
from semanticdraw_cli.errors import printable

console = Console(stderr=True)


class RenderProgress:
    """What runs now, for each scene: its phases (load, preset building, sampling steps, decoded tiles), and
    inside a sampling step its windows, since one step of a large canvas can take minutes.

    On a terminal: a bar for the current phase (each phase restarts the clock, so a long one shows its time),
    the step's windows in its description, and one bar for the scenes when there are several. Elsewhere,
    where bars would print nothing until the end: a line per phase and per step, and a line on the windows
    done whenever a step has run `PROGRESS_NOTE_SECONDS` since the last line.
    """

    def __init__(self, enabled: bool, scenes: int, output: Console | None = None,
                 clock: Callable[[], float] = time.monotonic, mode: str = "auto"):
        self.output, self.clock = output or console, clock
        self.mode = progress_mode(mode if enabled else "none", self.output)
        self.enabled, self.lines = self.mode != "none", self.mode in ("lines", "jsonl")
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.output,
            disable=not self.enabled or self.lines,
            transient=False,
        )
        self.scenes_task = self.progress.add_task("scenes", total=scenes, visible=self.enabled and scenes > 1)
        self.task, self.label, self.name, self.phase, self.scene, self.seeds = None, "", "", "", "", []
        self.steps, self.scene_start, self.step_start, self.noted = 0, 0.0, 0.0, 0.0

    def __enter__(self) -> RenderProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start_scene(self, name: str, seeds: list[int]) -> None:
        images = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} images"
        self.name = f"{printable(name)} ({images})"  # plain lines
        self.label = f"{escape(printable(name))} ({images})"  # rich markup
        self.scene, self.seeds = name, list(seeds)  # JSON events
        self.scene_start = self.clock()
        self._event("scene", f"seeds {', '.join(map(str, seeds))}", only_json=True)
        self.on_phase("starting", 0, None)

    def on_step(self, done: int, total: int) -> None:
        now = self.clock()
        if self.lines and done > 0:
            self._event("step", f"step {done}/{total} in {now - self.step_start:.1f} s", step=done, steps=total,
                        seconds=round(now - self.step_start, 3))
        elif self.lines:
            self._event("phase", f"sampling, {total} steps", phase="sampling", steps=total)
        self.steps, self.step_start, self.noted = total, now, now
        self.on_phase("sampling", done, total)

    def on_call(self, step: int, windows_done: int, windows: int) -> None:
        """A network call of sampling step `step` (from 0) is done: `windows_done` of its `windows`."""
        if not self.enabled:
            return
        if not self.lines:
            if self.task is not None and self.phase == "sampling":
                description = f"{self.label}: sampling, step {step + 1}: {windows_done}/{windows} windows"
                self.progress.update(self.task, description=description)
            return
        now = self.clock()
        if now - self.noted >= PROGRESS_NOTE_SECONDS and windows_done < windows:
            self.noted = now
            self._event("windows", f"step {step + 1}/{self.steps}: {windows_done}/{windows} windows in "
                        f"{now - self.step_start:.0f} s", step=step + 1, windows_done=windows_done, windows=windows,
                        seconds=round(now - self.step_start, 3))

    def on_phase(self, phase: str, done: int, total: int | None) -> None:
        """What runs now (model load, preset building, sampling, decoding), and its count when known."""
        if phase == self.phase and self.task is not None:
            self.progress.update(self.task, completed=done, total=total)
            return
        if self.lines and phase not in ("starting", "sampling", "done"):  # sampling: a line per step instead
            self._event("phase", phase, phase=phase)
        if self.lines and phase == "done":
            seconds = self.clock() - self.scene_start
            self._event("done", f"done in {seconds:.1f} s", seconds=round(seconds, 3))
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.phase = phase
        self.task = self.progress.add_task(f"{self.label}: {phase}", total=total, completed=done)

    def finish_scene(self) -> None:
        self.on_phase("done", 1, 1)
        self.progress.advance(self.scenes_task)

    def _event(self, kind: str, text: str, only_json: bool = False, **fields: object) -> None:
        """A plain line `NAME (seed S): text`, or with --progress jsonl one JSON object of the event."""
        if self.mode == "jsonl":
            line = json.dumps({"event": kind, "scene": self.scene, "seeds": self.seeds, **fields}, ensure_ascii=True)
        elif only_json:
            return
        else:
            line = f"{self.name}: {text}"
        self.output.file.write(line + "\n")
        self.output.file.flush()


def progress_mode(requested: str, output: Console, environ: Mapping[str, str] = os.environ) -> str:
    """`auto`: bars on a terminal, plain lines elsewhere and whenever CI=true (bars in a CI log are noise)."""
    if requested != "auto":
        return requested
    in_ci = environ.get("CI", "").strip().lower() in ("true", "1", "yes")
    return "bars" if output.is_terminal and not in_ci else "lines"


def print_summary(results, skipped: Sequence[tuple[str, int]] = ()) -> None:
    """One row per written image: the whole file name, its seed, seconds per phase, network work and its rate, CLIP
    scores if scored; then one per image `render --changed` skipped (file name, seed), marked `unchanged`."""
    from semanticdraw_cli.score import summary_cells

    table = Table(title="semanticdraw render", title_justify="left")
    names = [escape(printable(result.png.name if result.png else result.scene.name)) for result in results]
    scored = any("scores" in result.report for result in results)
    score_columns = ("CLIP fg", "CLIP bg", "lowest region") if scored else ()
    table.add_column("image", no_wrap=True)
    for column in ("seed", "total s", "load", "compile", "denoise", "decode", "network calls", "batch items", "pairs",
                   "TFLOP/s", *score_columns):
        table.add_column(column, justify="left" if column == "lowest region" else "right", no_wrap=True)
    for name, result in zip(names, results):
        seconds = result.report["seconds"]
        score_cells = summary_cells(result.report.get("scores")) if scored else ()
        table.add_row(
            name,
            str(result.seed),
            f"{seconds.get('total', 0.0):.2f}",
            f"{seconds['load']:.2f}",
            f"{seconds.get('compile', 0.0):.2f}",
            f"{seconds['denoise']:.2f}",
            f"{seconds['decode']:.2f}",
            str(result.report["network_calls"]),
            str(result.report["batch_items"]),
            f"{result.report['pairs_active']}/{result.report['pairs_total']}",
            f"{result.report.get('flops', {}).get('tflops_per_second') or 0.0:.3g}",
            *score_cells,
        )
    for name, seed in skipped:
        table.add_row(escape(printable(name)), str(seed), "unchanged", *[""] * (len(table.columns) - 3))
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural <= console.width:
        console.print(table)
    else:  # wider than the terminal (it wraps the lines) beats names cut short
        Console(stderr=True, width=natural).print(table, crop=False)
    halvings = sum(result.report.get("oom_halvings", 0) for result in results)
    if halvings:
        console.print(f"ran out of GPU memory {halvings} times: those calls were retried with half the batch "
                      "(set sampler.max_batch lower to avoid the retries)")
