"""`semanticdraw render`: one process, or one of a launch's; `--changed` renders only stale images, `--golden`
compares the images with goldens (exit 5), the score gate exits 3."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from semanticdraw_cli import defaults
from semanticdraw_cli.cli import options
from semanticdraw_cli.cli.score import min_score_override as _min_score_override
from semanticdraw_cli.cli.score import score_gate as _score_gate, scoring_clip as _scoring_clip
from semanticdraw_cli.cli.support import JSON_KEY, AllowOutside, JsonDocument, debugging, explain
from semanticdraw_cli.cli.support import check_runtime_options as _check_runtime_options
from semanticdraw_cli.cli.support import fail as _fail
from semanticdraw_cli.cli.support import load_scenes as _load_scenes
from semanticdraw_cli.errors import SceneError, printable, printable_lines, problem_lines

PROGRESS_MODES = ("auto", "bars", "lines", "jsonl", "none")


def summary_entry(result) -> dict:
    """One image of the `--json` summary."""
    entry = {"scene": str(result.scene.source), "seed": result.seed, "png": str(result.png), "report": str(result.json),
             "seconds": result.report["seconds"]["total"], "network_calls": result.report["network_calls"],
             "content_key": result.report.get("content_key")}
    return entry | ({"scores": result.report["scores"]} if "scores" in result.report else {})


def render(
    ctx: typer.Context,
    scenes: Annotated[list[Path], typer.Argument(help="Scene files (.yaml, .psd, .ora).")],
    output: options.Output = Path(defaults.OUTPUT_DIR),
    seed: options.Seed = None,
    images: options.Images = None,
    model: options.Model = None,
    device: options.Device = None,
    dtype: options.Dtype = None,
    set_: options.Set = None,
    plan: options.Plan = None,
    compile_: Annotated[Optional[bool], typer.Option(
        "--compile/--no-compile",
        help="torch.compile the network: static shapes, CUDA graphs on CUDA [default: the scene's].",
    )] = None,
    peak_tflops: Annotated[Optional[float], typer.Option(
        help="The device's peak TFLOP/s, for the report's share of it [default: measured once by a matrix product]."
    )] = None,
    shard: options.Shard = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace existing outputs (else they are refused before any model loads).")
    ] = False,
    changed: Annotated[bool, typer.Option(
        "--changed", help="Render only images whose report and PNG do not hold the content key of their inputs "
                          "now (replacing those); the others are skipped, and with nothing to render no model loads.",
    )] = False,
    golden: Annotated[Optional[Path], typer.Option(
        "--golden", help="Compare each image with DIR/NAME-SEED.png region by region; exit 5 beyond --tolerance.")] = None,
    tolerance: Annotated[Optional[float], typer.Option(
        help="The largest mean absolute difference (0-255) allowed in any region, the background or the image.",
        show_default=str(defaults.GOLDEN_TOLERANCE))] = None,
    update_golden: Annotated[bool, typer.Option(
        "--update-golden", help="Copy the images over their goldens in --golden DIR instead of comparing.")] = False,
    allow_outside: AllowOutside = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")] = False,
    progress: Annotated[str, typer.Option(
        "--progress", help="bars | lines | jsonl (one JSON event per phase and step) | none, on stderr; auto: bars on "
                           "a terminal, lines elsewhere and when CI=true.")] = "auto",
    json_: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON document on stdout when the call ends: a list with one entry "
                                    "per image written or skipped; on failure an object {error, exit_code, images, "
                                    "unfinished}."),
    ] = False,
    score: Annotated[Optional[bool], typer.Option("--score/--no-score", help="CLIP score per region into each report and the summary [default: on when a threshold is set].")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Exit 3 when a region's CLIP score (0-100) is below X (sets quality.min_region_score).")] = None,
    model_clip: Annotated[Optional[str], typer.Option("--model-clip", help="CLIP checkpoint for scores: hub id, folder, or preset tiny.")] = None,
    variants: options.Variants = "pick",
    from_: Annotated[Optional[Path], typer.Option("--from", help="With --reroll: the earlier render (PNG) to keep the rest of.")] = None,
    reroll: Annotated[Optional[str], typer.Option("--reroll", help="Re-render only these regions (NAME[,NAME...]) of --from's image and keep every other pixel; --seed then seeds them.")] = None,
) -> None:
    """Render scenes to NAME-SEED.png (scene embedded) and NAME-SEED.json (timing report).

    Every output file of the call is checked before any model loads: two scenes that would write the
    same file, existing files (without --overwrite or --changed) and an output folder that cannot be
    written are refused (exit 2). Under `accelerate launch` or `torchrun` the batches are split between
    the processes, each on its own device (README: Many GPUs).
    """
    from semanticdraw_cli import freshness, launch
    from semanticdraw_cli.jobs import parse_shard, plan_call
    from semanticdraw_cli.outputs import job_reads, refuse_overwriting_inputs

    document = JsonDocument()  # printed once when the command ends (cli.support.Commands), by one process
    document.silent = not launch.main_process()
    if json_:
        ctx.meta[JSON_KEY] = document
    shard_spec = parse_shard(shard)
    # a launch checks its devices itself; --changed checks the device's presence once there is something to render
    _check_runtime_options(None if launch.launched() else device, dtype, present=not changed)
    if peak_tflops is not None and not peak_tflops > 0:
        _fail(f"--peak-tflops {peak_tflops}: expected a positive number of TFLOP/s", 2)
    _check_ci_options(progress, golden, tolerance, update_golden, output)
    sampler_seed = seed if reroll is None else None  # a re-roll's --seed seeds the re-rolled regions
    overrides = options.scene_overrides(set_, seed=sampler_seed, images=images, plan=plan, model=model, compile_=compile_)
    overrides += _min_score_override(min_score, score)
    if reroll is not None:
        from semanticdraw_cli.cli.reroll import reroll_overrides

        overrides = reroll_overrides(scenes, from_, reroll, seed, overrides, allow_outside)
    elif from_ is not None:
        _fail("--from names the image a re-roll keeps the rest of: add --reroll NAME", 2)
    called: dict = {}  # the whole plan of this call, and the images --changed skips

    def load_and_plan(processes: int = 1):
        loaded, problems = _load_scenes(scenes, overrides, allow_outside)
        if problems:
            _fail("\n".join(problems), 2)
        whole = plan_call(_expand_variants(loaded, variants), output, overwrite or changed, shard_spec, processes)
        called.update(plan=whole, skipped=[])
        if golden is not None and update_golden:  # a golden is never written over a file a scene reads
            refuse_overwriting_inputs([golden / image.png.name for image in whole.outputs],
                                      job_reads([job.as_output_job() for job in whole.jobs]))
        if not changed:
            return whole
        stale, called["skipped"] = freshness.stale_plan(whole, freshness.judge(whole, device, dtype))  # no model yet
        return stale

    if launch.launched():  # one of several processes: the images are split between them (launch.py)
        if score or min_score is not None:
            _fail("--score and --min-score do not run under a launcher yet; render, then `semanticdraw score` "
                  "the images", 2)
        call = launch.Call(load_and_plan, output, device, dtype, quiet, explain, summary_entry, debugging(ctx),
                           "none" if quiet else progress)
        if _render_launched(call, document, shard, called):
            _goldens(called["plan"], golden, tolerance, update_golden, quiet)
        return
    if (hint := launch.single_process_hint()) and not quiet:
        typer.echo(f"warning: {hint}", err=True)
    job_plan = load_and_plan()
    document.images += [freshness.skipped_entry(verdict) for verdict in called["skipped"]]
    if not job_plan.jobs:
        if called["skipped"]:
            _print_summary([], called["skipped"], quiet)
            return _goldens(called["plan"], golden, tolerance, update_golden, quiet)
        return _empty_share(shard, job_plan.total)
    if changed:
        _check_runtime_options(device, dtype)

    from semanticdraw_cli import job_loop
    from semanticdraw_cli.cli.progress import RenderProgress
    from semanticdraw_cli.render import Renderer

    clip = _scoring_clip([job.scene for job in job_plan.jobs], score, model_clip, device)
    renderer = Renderer(device=device, dtype=dtype, peak_tflops=peak_tflops)
    account = job_loop.Account(job_plan.jobs, summary_entry, document.images)
    document.unfinished = account.left
    hooks = job_loop.Hooks(
        score=None if clip is None else lambda done: _score(done, clip),
        warning=None if quiet else lambda job, warning: typer.echo(
            f"warning: {printable(job.scene.source or job.scene.name)}: {printable_lines(warning)}", err=True),
    )
    try:
        with RenderProgress(enabled=not quiet, scenes=len(job_plan.jobs), mode=progress) as shown:
            job_loop.run(renderer, account, job_loop.planned_images(job_plan), shown, hooks)
    except KeyboardInterrupt:
        _fail("interrupted; no partial files were written", 130)
    _print_summary(account.results, called["skipped"], quiet)
    if clip is not None:
        _score_gate([(str(r.png or r.scene.name), r.report["scores"]) for r in account.results])
    _goldens(called["plan"], golden, tolerance, update_golden, quiet)


def _check_ci_options(progress: str, golden: Path | None, tolerance: float | None, update_golden: bool,
                      output: Path) -> None:
    """--progress, --golden, --tolerance and --update-golden make sense together (exit 2 naming the option)."""
    import os

    if progress not in PROGRESS_MODES:
        _fail(f"--progress {progress!r}: expected one of {', '.join(PROGRESS_MODES)}", 2)
    if golden is None and (tolerance is not None or update_golden):
        _fail(f"{'--tolerance' if tolerance is not None else '--update-golden'} needs --golden DIR, the folder of the "
              "golden images", 2)
    if tolerance is not None and not tolerance >= 0:
        _fail(f"--tolerance {tolerance}: expected a mean absolute difference of 0 to 255", 2)
    if golden is not None and os.path.realpath(golden) == os.path.realpath(output):
        _fail(f"--golden {golden}: is the output folder (-o); the goldens must be kept apart from the new images", 2)
    if golden is not None and golden.exists() and not golden.is_dir():
        _fail(f"--golden {golden}: is a file; expected the folder of the golden images", 2)


def _goldens(plan, golden: Path | None, tolerance: float | None, update_golden: bool, quiet: bool) -> None:
    """Compare every image of the call (written or skipped) with its golden, or replace the goldens."""
    from semanticdraw_cli import golden as goldens
    from semanticdraw_cli.cli.support import Failure

    if golden is None:
        return
    scenes = {job.label: job.scene for job in plan.jobs}
    images = [(image.png, scenes[image.label]) for image in plan.outputs]
    if update_golden:
        for png, _ in images:
            goldens.update(png, golden)
        if not quiet:
            typer.echo(f"updated {len(images)} golden(s) in {printable(golden)}", err=True)
        return
    checks = [goldens.check(png, golden, scene) for png, scene in images]
    message = goldens.gate_message(checks, defaults.GOLDEN_TOLERANCE if tolerance is None else tolerance)
    if message:
        raise Failure(message, goldens.GOLDEN_EXIT_CODE)
    if not quiet:
        typer.echo(f"goldens: {len(checks)} image(s) within the tolerance of their golden", err=True)


def _expand_variants(loaded: list, mode: str) -> list:
    """(path, scene) -> (label, scene) per image of a scene with `{a|b}` prompt variants (variants.py)."""
    from semanticdraw_cli import variants as prompt_variants

    if mode not in prompt_variants.MODES:
        _fail(f"--variants {mode!r}: expected one of {', '.join(prompt_variants.MODES)}", 2)
    try:
        return prompt_variants.expand([(str(path), scene) for path, scene in loaded], mode)
    except SceneError as error:
        _fail("\n".join(problem_lines(error.problems)), 2)


def _score(results: list, clip) -> None:
    from semanticdraw_cli.score import score_results

    score_results(results, clip)


def _render_launched(call, document: JsonDocument, shard: str | None, called: dict) -> bool:
    """This process's share of a launched render; the main process reports the whole launch (and returns True)."""
    from semanticdraw_cli import freshness, launch

    try:
        outcome = launch.render(call)
    except launch.LaunchFailure as failure:
        if not failure.main:
            document.silent = True
            raise typer.Exit(code=failure.code) from None
        left = failure.unfinished
        document.images[:], document.unfinished = failure.images, lambda: left
        _fail(failure.message, failure.code)
    if outcome is None:
        document.silent = True
        return False
    skipped = called.get("skipped", [])
    document.images[:] = [freshness.skipped_entry(verdict) for verdict in skipped] + list(outcome.entries)
    if not outcome.plan.jobs and not skipped:
        _empty_share(shard, outcome.plan.total)
        return True
    _print_summary(outcome.results, skipped, call.quiet)
    return True


def _empty_share(shard: str | None, total: int) -> None:
    typer.echo(f"--shard {shard}: this share is empty ({total} (scene, seed) jobs in all); nothing to render", err=True)


def _print_summary(results: list, skipped: list, quiet: bool) -> None:
    """The summary table on stderr (the --json document goes to stdout when the command ends)."""
    from semanticdraw_cli.cli.progress import print_summary

    if not quiet:
        print_summary(results, [(verdict.image.png.name, verdict.image.seed) for verdict in skipped])
