"""Terminal feedback for `render`: rich progress bars on stderr and a summary table at the end."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)


class RenderProgress:
    """A bar for the steps of the current scene, and one for the scenes when there are several."""

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
        self.steps_task = None

    def __enter__(self) -> RenderProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start_scene(self, name: str, seeds: list[int]) -> None:
        label = f"{name} (seed {seeds[0]})" if len(seeds) == 1 else f"{name} ({len(seeds)} images)"
        if self.steps_task is not None:
            self.progress.remove_task(self.steps_task)
        self.label = label
        self.steps_task = self.progress.add_task(f"{label}: loading model", total=None)

    def on_step(self, done: int, total: int) -> None:
        self.progress.update(self.steps_task, description=self.label, completed=done, total=total)

    def finish_scene(self) -> None:
        self.progress.advance(self.scenes_task)


def print_summary(results) -> None:
    """One row per written image: file, seconds per phase, network work and its rate."""
    table = Table(title="semanticdraw render", title_justify="left")
    for column in ("image", "total s", "load", "compile", "denoise", "decode", "UNet calls", "batch items", "pairs",
                   "TFLOP/s"):
        table.add_column(column, justify="left" if column == "image" else "right")
    for result in results:
        seconds = result.report["seconds"]
        table.add_row(
            result.png.name if result.png else result.scene.name,
            f"{seconds.get('total', 0.0):.2f}",
            f"{seconds['load']:.2f}",
            f"{seconds.get('compile', 0.0):.2f}",
            f"{seconds['denoise']:.2f}",
            f"{seconds['decode']:.2f}",
            str(result.report["unet_calls"]),
            str(result.report["batch_items"]),
            f"{result.report['pairs_active']}/{result.report['pairs_total']}",
            f"{result.report['flops']['tflops_per_second'] or 0.0:.3g}",
        )
    console.print(table)
    halvings = sum(result.report.get("oom_halvings", 0) for result in results)
    if halvings:
        console.print(f"ran out of GPU memory {halvings} times: those calls were retried with half the batch "
                      "(set sampler.max_batch lower to avoid the retries)")
