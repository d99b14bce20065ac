"""Commands for CI asset builds: `check` (are the outputs fresh? the `black --check` of assets, exit 4) and
`compare` (how two renders differ, region by region)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from semanticdraw_cli import defaults
from semanticdraw_cli.cli import options
from semanticdraw_cli.cli.support import AllowOutside, check_runtime_options, fail, load_scenes
from semanticdraw_cli.errors import SceneError, printable, problem_lines


def check(
    scenes: Annotated[list[Path], typer.Argument(help="Scene files (.yaml, .psd, .ora).")],
    output: options.Output = Path(defaults.OUTPUT_DIR),
    seed: options.Seed = None,
    images: options.Images = None,
    model: options.Model = None,
    device: Annotated[Optional[str], typer.Option(
        help="The device type the renders ran on: auto, cuda, mps or cpu (need not be on this machine).",
        show_default="auto: cuda, then mps, then cpu")] = None,
    dtype: options.Dtype = None,
    set_: options.Set = None,
    shard: options.Shard = None,
    allow_outside: AllowOutside = False,
    json_: Annotated[bool, typer.Option(
        "--json", help="Print every output with `fresh` and the reasons it is stale as JSON on stdout.")] = False,
) -> None:
    """Render nothing: exit 0 when every output of the scenes holds the content key of its inputs now, 4 listing
    every missing or stale output and which input changed.

    Give the options the render was given (--seed, --images, --model, --set, --device, --dtype): they are
    part of what an image is made from.
    """
    from semanticdraw_cli import freshness
    from semanticdraw_cli.jobs import JobPlan, parse_shard, select
    from semanticdraw_cli.outputs import PlannedImage, output_paths

    shard_spec = parse_shard(shard)
    check_runtime_options(device, dtype, present=False)
    overrides = options.scene_overrides(set_, seed=seed, images=images, model=model)
    loaded, problems = load_scenes(scenes, overrides, allow_outside)
    if problems:
        fail("\n".join(problems), 2)
    jobs = select([(str(path), scene) for path, scene in loaded], shard_spec)
    planned = [PlannedImage(job.label, job.label, seed, *output_paths(output, job.scene.name, seed))
               for job in jobs for seed in job.seeds]
    verdicts = freshness.judge(JobPlan(tuple(jobs), len(planned), tuple(planned)), device, dtype)
    stale = [verdict for verdict in verdicts if not verdict.fresh]
    if json_:
        typer.echo(json.dumps([{"scene": v.image.label, "seed": v.image.seed, "png": str(v.image.png),
                                "report": str(v.image.report), "fresh": v.fresh, "content_key": v.key,
                                "reasons": list(v.reasons)} for v in verdicts], indent=2))
    if stale:
        lines = [f"{printable(v.image.png)}: {printable('; '.join(v.reasons))}" for v in stale]
        fail(f"{len(stale)} of {len(verdicts)} output(s) missing or stale (exit {freshness.STALE_EXIT_CODE}); "
             "`semanticdraw render --changed` with the same options renders them:\n  " + "\n  ".join(lines),
             freshness.STALE_EXIT_CODE)
    typer.echo(f"{len(verdicts)} output(s) fresh in {printable(output)}", err=True)


def compare(
    first: Annotated[Path, typer.Argument(help="A rendered PNG.")],
    second: Annotated[Path, typer.Argument(help="The PNG to compare it with (e.g. its golden).")],
    scene: Annotated[Optional[Path], typer.Option(
        "--scene", help="The scene whose regions to compare under [default: the one the first PNG embeds].")] = None,
    set_: options.Set = None,
    allow_outside: AllowOutside = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the differences of every area as JSON.")] = False,
) -> None:
    """Per-region difference of two renders: mean absolute (0-255), PSNR (dB) and SSIM under each region's mask,
    the uncovered background and the whole image."""
    from semanticdraw_cli import golden, score as scoring

    overrides = options.scene_overrides(set_)
    given, problems = load_scenes([scene], overrides, allow_outside) if scene is not None else ([], [])
    if problems:
        fail("\n".join(problems), 2)
    try:
        a, b = scoring.read_pixels(first), scoring.read_pixels(second)
        layout = given[0][1] if given else _embedded_or_none(first, overrides, allow_outside)
        if layout is not None:
            scoring.check_canvas(first, a, layout)
    except SceneError as error:
        fail("\n".join(problem_lines(error.problems)), 2)
    if a.shape != b.shape:
        fail(f"{printable(first)} is {a.shape[1]}x{a.shape[0]} but {printable(second)} is {b.shape[1]}x{b.shape[0]}: "
             "only pictures of one size compare", 2)
    found = golden.scene_differences(a, b, layout)
    if json_:
        typer.echo(json.dumps({"first": str(first), "second": str(second), "areas": [area.to_dict() for area in found]},
                              indent=2))
        return
    _print_differences(found)


def _embedded_or_none(path: Path, overrides: list[str], allow_outside: bool):
    """The scene a rendered PNG embeds; None, saying why on stderr, for a picture without one or whose scene does
    not load here (its masks elsewhere): then only the whole image compares."""
    from semanticdraw_cli.score import embedded_scene

    try:
        return embedded_scene(path, overrides, allow_outside)
    except SceneError as error:
        why = problem_lines(error.problems)[0]
    typer.echo(f"note: regions not compared ({why}); pass --scene SCENE to compare them", err=True)
    return None


def _print_differences(found) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="semanticdraw compare", title_justify="left")
    for column in ("area", "pixels", "mean abs", "PSNR dB", "SSIM"):
        table.add_column(column, justify="left" if column == "area" else "right")
    for area in found:
        cells = ("-", "-", "-") if area.mean_abs is None else (
            f"{area.mean_abs:.3f}", "inf" if area.psnr == float("inf") else f"{area.psnr:.2f}", f"{area.ssim:.4f}")
        table.add_row(escape(printable(area.name)), str(area.pixels), *cells)
    Console().print(table)
