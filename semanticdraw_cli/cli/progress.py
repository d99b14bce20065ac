"""Terminal feedback for `render`: rich progress bars on stderr and a summary table at the end."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)


class RenderProgress:
    """A bar for the current phase of the current scene (load, sampling steps, decoded tiles, ...), and
    one for the scenes when there are several. Each phase restarts the clock, so a long one shows its time."""

    def __init__(self, enabled: bool, scenes: int):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self.scenes_task = self.progress.add_task("scenes", total=scenes, visible=enabled and scenes > 1)
        self.task, self.label, self.phase = None, "", ""

    def __enter__(self) -> RenderProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start_scene(self, name: str, seeds: list[int]) -> None:
        self.label = f"{name} (seed {seeds[0]})" if len(seeds) == 1 else f"{name} ({len(seeds)} images)"
        self.on_phase("starting", 0, None)

    def on_step(self, done: int, total: int) -> None:
        self.on_phase("sampling", done, total)

    def on_phase(self, phase: str, done: int, total: int | None) -> None:
        """What runs now (model load, preset building, sampling, decoding), and its count when known."""
        if phase == self.phase and self.task is not None:
            self.progress.update(self.task, completed=done, total=total)
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.phase = phase
        self.task = self.progress.add_task(f"{self.label}: {phase}", total=total, completed=done)

    def finish_scene(self) -> None:
        self.on_phase("done", 1, 1)
        self.progress.advance(self.scenes_task)


def print_summary(results) -> None:
    """One row per written image: the whole file name, its seed, seconds per phase, network work and its rate, CLIP scores if scored."""
    from semanticdraw_cli.score import summary_cells

    table = Table(title="semanticdraw render", title_justify="left")
    names = [result.png.name if result.png else result.scene.name for result in results]
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
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural <= console.width:
        console.print(table)
    else:  # wider than the terminal (it wraps the lines) beats names cut short
        Console(stderr=True, width=natural).print(table, crop=False)
    halvings = sum(result.report.get("oom_halvings", 0) for result in results)
    if halvings:
        console.print(f"ran out of GPU memory {halvings} times: those calls were retried with half the batch "
                      "(set sampler.max_batch lower to avoid the retries)")
