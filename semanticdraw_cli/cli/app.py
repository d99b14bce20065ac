"""The `semanticdraw` command line. Thin: parse arguments, call the library, map failures to exit codes.

Heavy modules (torch, diffusers) are imported inside the commands so `--help` stays fast. Every failure
ends in `cli.support.Commands.invoke`: one clear message and an exit code (2 bad input, 1 runtime, 130 interrupted);
a bug shows its traceback only with `--debug` or SEMANTICDRAW_DEBUG=1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from semanticdraw_cli import defaults
from semanticdraw_cli.cli.support import DEBUG_KEY, JSON_KEY, AllowOutside, Commands, JsonDocument, debugging, explain
from semanticdraw_cli.cli.support import check_runtime_options as _check_runtime_options
from semanticdraw_cli.cli import options
from semanticdraw_cli.cli.support import fail as _fail
from semanticdraw_cli.cli.support import load_scenes as _load_scenes
from semanticdraw_cli.cli.score import min_score_override as _min_score_override
from semanticdraw_cli.cli.score import score, score_gate as _score_gate, scoring_clip as _scoring_clip
from semanticdraw_cli.cli.watch import WatchCommand, watch
from semanticdraw_cli.errors import SceneError, printable, printable_lines, problem_lines
app = typer.Typer(
    cls=Commands,
    help="Render large images from regional prompts with few-step diffusion models (SemanticDraw).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: rich markup would eat "[default: ...]"
)


def _show_version(value: bool) -> None:
    if value:
        from semanticdraw_cli import __version__

        typer.echo(f"semanticdraw {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an internal error.")] = False,
) -> None:
    """Render large images from regional prompts with few-step diffusion models (SemanticDraw)."""
    ctx.meta[DEBUG_KEY] = debug


def _summary_entry(result) -> dict:
    """One image of the `--json` summary."""
    entry = {"scene": str(result.scene.source), "seed": result.seed, "png": str(result.png), "report": str(result.json),
             "seconds": result.report["seconds"]["total"], "network_calls": result.report["network_calls"]}
    return entry | ({"scores": result.report["scores"]} if "scores" in result.report else {})


@app.command()
def render(
    ctx: typer.Context,
    scenes: Annotated[list[Path], typer.Argument(help="Scene files (.yaml, .psd, .ora).")],
    output: options.Output = Path(defaults.OUTPUT_DIR),
    seed: options.Seed = None,
    images: Annotated[
        Optional[int],
        typer.Option(
            help="Images per scene, seeds seed..seed+N-1, in batches of sampler.max_batch.",
            show_default=f"the scene's, else {defaults.IMAGES}",
        ),
    ] = None,
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
    shard: Annotated[Optional[str], typer.Option(help="Render only the K-th of N shares of the (scene, seed) jobs: K/N.")] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace existing outputs (else they are refused before any model loads).")
    ] = False,
    allow_outside: AllowOutside = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")] = False,
    json_: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON document on stdout when the call ends: a list with one entry "
                                    "per image written; on failure an object {error, exit_code, images, unfinished}."),
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
    same file, existing files (without --overwrite) and an output folder that cannot be written are
    refused (exit 2). Under `accelerate launch` or `torchrun` the batches are split between the
    processes, each on its own device (README: Many GPUs).
    """
    from semanticdraw_cli.jobs import parse_shard, plan_call

    from semanticdraw_cli import launch

    document = JsonDocument()  # printed once when the command ends (cli.support.Commands), by one process
    document.silent = not launch.main_process()
    if json_:
        ctx.meta[JSON_KEY] = document
    shard_spec = parse_shard(shard)

    _check_runtime_options(None if launch.launched() else device, dtype)  # a launch checks its devices itself
    if peak_tflops is not None and not peak_tflops > 0:
        _fail(f"--peak-tflops {peak_tflops}: expected a positive number of TFLOP/s", 2)
    sampler_seed = seed if reroll is None else None  # a re-roll's --seed seeds the re-rolled regions
    overrides = options.scene_overrides(set_, seed=sampler_seed, images=images, plan=plan, model=model, compile_=compile_)
    overrides += _min_score_override(min_score, score)
    if reroll is not None:
        from semanticdraw_cli.cli.reroll import reroll_overrides

        overrides = reroll_overrides(scenes, from_, reroll, seed, overrides, allow_outside)
    elif from_ is not None:
        _fail("--from names the image a re-roll keeps the rest of: add --reroll NAME", 2)

    def load_and_plan(processes: int = 1):
        loaded, problems = _load_scenes(scenes, overrides, allow_outside)
        if problems:
            _fail("\n".join(problems), 2)
        return plan_call(_expand_variants(loaded, variants), output, overwrite, shard_spec, processes)

    if launch.launched():  # one of several processes: the images are split between them (launch.py)
        if score or min_score is not None:
            _fail("--score and --min-score do not run under a launcher yet; render, then `semanticdraw score` "
                  "the images", 2)
        call = launch.Call(load_and_plan, output, device, dtype, quiet, explain, _summary_entry, debugging(ctx))
        return _render_launched(call, document, shard)
    if (hint := launch.single_process_hint()) and not quiet:
        typer.echo(f"warning: {hint}", err=True)
    job_plan = load_and_plan()
    if not job_plan.jobs:
        return _empty_share(shard, job_plan.total)

    from semanticdraw_cli import job_loop
    from semanticdraw_cli.cli.progress import RenderProgress
    from semanticdraw_cli.render import Renderer

    clip = _scoring_clip([job.scene for job in job_plan.jobs], score, model_clip, device)
    renderer = Renderer(device=device, dtype=dtype, peak_tflops=peak_tflops)
    account = job_loop.Account(job_plan.jobs, _summary_entry, document.images)
    document.unfinished = account.left
    hooks = job_loop.Hooks(
        score=None if clip is None else lambda done: _score(done, clip),
        warning=None if quiet else lambda job, warning: typer.echo(
            f"warning: {printable(job.scene.source or job.scene.name)}: {printable_lines(warning)}", err=True),
    )
    try:
        with RenderProgress(enabled=not quiet, scenes=len(job_plan.jobs)) as progress:
            job_loop.run(renderer, account, job_loop.planned_images(job_plan), progress, hooks)
    except KeyboardInterrupt:
        _fail("interrupted; no partial files were written", 130)
    if not quiet:
        _print_summary(account.results)
    if clip is not None:
        _score_gate([(str(r.png or r.scene.name), r.report["scores"]) for r in account.results])


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


def _render_launched(call, document: JsonDocument, shard: str | None) -> None:
    """This process's share of a launched render; the main process reports the whole launch."""
    from semanticdraw_cli import launch

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
        return
    document.images[:] = outcome.entries
    if not outcome.plan.jobs:
        return _empty_share(shard, outcome.plan.total)
    if not call.quiet:
        _print_summary(outcome.results)


def _empty_share(shard: str | None, total: int) -> None:
    typer.echo(f"--shard {shard}: this share is empty ({total} (scene, seed) jobs in all); nothing to render", err=True)


def _print_summary(results: list) -> None:
    """The summary table on stderr (the --json document goes to stdout when the command ends)."""
    from semanticdraw_cli.cli.progress import print_summary

    print_summary(results)


@app.command()
def inspect(
    image: Annotated[Path, typer.Argument(help="A PNG written by `semanticdraw render`.")],
    json_: Annotated[bool, typer.Option("--json", help="Print scene and parameters as JSON.")] = False,
) -> None:
    """Print the scene embedded in a rendered PNG, so the image can be reproduced."""
    from semanticdraw_cli.outputs import read_embedded
    from semanticdraw_cli.scene.yaml_text import parse_yaml

    try:
        scene_yaml, params = read_embedded(image)
    except SceneError as error:
        _fail("\n".join(problem_lines(error.problems)), 2)
    except KeyError:
        _fail(f"{image}: no embedded scene (not written by semanticdraw render?)", 2)
    if json_:
        scene = parse_yaml(scene_yaml, str(image))[0]  # checked by read_embedded; dates print as text
        typer.echo(json.dumps({"scene": scene, "params": params}, indent=2, default=str))
    else:
        typer.echo(f"# seed {printable(params.get('seed'))}; reproduce: save as scene.yaml, then semanticdraw render scene.yaml")
        typer.echo(printable_lines(scene_yaml), nl=False)



@app.command()
def validate(
    scenes: Annotated[list[Path], typer.Argument(help="Scene files (.yaml, .psd, .ora).")],
    set_: options.Set = None,
    allow_outside: AllowOutside = False,
) -> None:
    """Check scene files without loading a model: exit 0 when all are valid, 2 listing every problem.

    A YAML file next to a same-named .psd/.ora drawing holds that drawing's settings: it is checked
    together with the drawing.
    """
    from semanticdraw_cli.scene.loader import scene_warnings

    loaded, problems = _load_scenes(scenes, options.scene_overrides(set_), allow_outside)
    for _, scene in loaded:
        for warning in scene_warnings(scene):
            typer.echo(f"warning: {printable_lines(warning)}", err=True)
    if problems:
        _fail("\n".join(problems), 2)
    for path, scene in loaded:
        typer.echo(f"ok: {printable(path)} ({printable(_describe(path, scene))})")


def _describe(path: Path, scene) -> str:
    """`1280x768, 9 regions`, plus the drawing when the file given is its settings or names it."""
    count = len(scene.regions)
    text = f"{scene.canvas.width}x{scene.canvas.height}, {count} region{'' if count == 1 else 's'}"
    if scene.source is not None and os.path.realpath(scene.source) != os.path.realpath(path):
        text += f", drawing {scene.source}"
    return text


@app.command()
def preview(
    scene: Annotated[Path, typer.Argument(help="Scene file (.yaml, .psd, .ora).")],
    output: Annotated[
        Optional[Path],
        typer.Option("-o", "--output", help="PNG to write (replaced if it exists; its folder is created if missing).",
                     show_default="NAME-preview.png"),
    ] = None,
    set_: options.Set = None,
    allow_outside: AllowOutside = False,
) -> None:
    """Draw the layout (each region in its own colour, in z-order) with a legend. Loads no model.

    The picture is the layout at canvas size with the legend (a colour swatch and `name: prompt` per
    region) in a panel to its right.
    """
    from semanticdraw_cli.outputs import atomic_path, check_output_name, prepare_folder, refuse_overwriting_inputs
    from semanticdraw_cli.preview import draw_preview
    from semanticdraw_cli.scene.reads import scene_reads

    if output is not None:
        check_output_name(output, (".png",))
    loaded, problems = _load_scenes([scene], options.scene_overrides(set_), allow_outside)
    if problems:
        _fail("\n".join(problems), 2)
    target = output or Path(f"{loaded[0][1].name}-preview.png")
    refuse_overwriting_inputs([target], scene_reads(scene, loaded[0][1]))
    prepare_folder(target.parent)
    picture = draw_preview(loaded[0][1])
    with atomic_path(target) as temporary:
        picture.save(temporary, format="PNG")
    typer.echo(f"wrote {printable(target)}")


@app.command("import")
def import_layers(
    art: Annotated[Path, typer.Argument(help="Layered drawing (.psd, .ora): one layer per region, named by its prompt.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="YAML scene to write; its masks go to STEM-masks/ beside it (scene.yaml: scene-masks/).")],
    set_: options.Set = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing scene and its masks.")] = False,
    allow_outside: AllowOutside = False,
) -> None:
    """Turn a layered drawing into a plain YAML scene with one mask PNG per region."""
    from semanticdraw_cli.scene.layers import import_layered_scene

    try:
        written = import_layered_scene(
            art, output, options.scene_overrides(set_), overwrite=overwrite, allow_outside=allow_outside
        )
    except OSError as error:
        _fail(f"cannot write {output}: {error}; check the disk has room", 1)
    typer.echo(f"wrote {printable(written[0])} and {len(written) - 1} pictures in {printable(written[1].parent)}")


app.command("watch", cls=WatchCommand)(watch)
app.command("score")(score)


def main() -> None:
    try:
        app(prog_name="semanticdraw")
    except SystemExit as done:
        launched = sys.modules.get("semanticdraw_cli.launch")  # imported only by a launched render
        if launched is not None:
            launched.end_process(done.code if isinstance(done.code, int) else int(done.code is not None))
        raise


if __name__ == "__main__":
    main()
