"""The `semanticdraw` command line. Thin: parse arguments, call the library, map failures to exit codes.

Heavy modules (torch, diffusers) are imported inside the commands so `--help` stays fast. Every failure
ends in `cli_support.Commands.invoke`: one clear message and an exit code (2 bad input, 1 runtime, 130 interrupted);
a bug shows its traceback only with `--debug` or SEMANTICDRAW_DEBUG=1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from semanticdraw_cli import defaults
from semanticdraw_cli.cli_support import DEBUG_KEY, JSON_KEY, AllowOutside, Commands
from semanticdraw_cli.cli_support import check_runtime_options as _check_runtime_options
from semanticdraw_cli.cli_support import command_line_paths
from semanticdraw_cli.cli_support import fail as _fail
from semanticdraw_cli.cli_support import load_scenes as _load_scenes
from semanticdraw_cli.cli_watch import WatchCommand, watch
from semanticdraw_cli.defaults import CLIP_CHECKPOINT
from semanticdraw_cli.errors import SceneError
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
             "seconds": result.report["seconds"]["total"], "unet_calls": result.report["unet_calls"]}
    return entry | ({"scores": result.report["scores"]} if "scores" in result.report else {})


@app.command()
def render(
    ctx: typer.Context,
    scenes: Annotated[list[Path], typer.Argument(help="Scene files (.yaml, .psd, .ora).")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Folder for NAME-SEED.png and NAME-SEED.json (created if missing).")
    ] = Path(defaults.OUTPUT_DIR),
    seed: Annotated[
        Optional[int], typer.Option(help="Seed of the first image.", show_default=f"the scene's, else {defaults.SEED}")
    ] = None,
    images: Annotated[
        Optional[int],
        typer.Option(
            help="Images per scene, seeds seed..seed+N-1, batched together.",
            show_default=f"the scene's, else {defaults.IMAGES}",
        ),
    ] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            help="Checkpoint: hub id, folder, .safetensors, or preset tiny|small|full-random. A path here is relative "
            "to the current folder (paths inside a scene file: to the scene's folder).",
            show_default="the scene's",
        ),
    ] = None,
    device: Annotated[
        Optional[str],
        typer.Option(help="auto, cuda, cuda:N, mps or cpu.", show_default="auto: cuda, then mps, then cpu"),
    ] = None,
    dtype: Annotated[
        Optional[str],
        typer.Option(help="auto, float16, bfloat16 or float32.", show_default="auto: float16 on cuda (bfloat16 for flux, klein), else float32"),
    ] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key.path=value (repeatable).")] = None,
    plan: Annotated[
        Optional[str],
        typer.Option(help="default | reference | regions.", show_default=f"the scene's, else {defaults.PLAN}"),
    ] = None,
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
        typer.Option("--json", help="Print a JSON summary on stdout: a list with one entry per image written; "
                                    "on failure an object {error, exit_code, images}."),
    ] = False,
    score: Annotated[Optional[bool], typer.Option("--score/--no-score", help="CLIP score per region into each report and the summary [default: on when a threshold is set].")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Exit 3 when a region's CLIP score (0-100) is below X (sets quality.min_region_score).")] = None,
    model_clip: Annotated[Optional[str], typer.Option("--model-clip", help="CLIP checkpoint for scores: hub id, folder, or preset tiny.")] = None,
) -> None:
    """Render scenes to NAME-SEED.png (scene embedded) and NAME-SEED.json (timing report).

    Every output file of the call is checked before any model loads: two scenes that would write the
    same file, existing files (without --overwrite) and an output folder that cannot be written are
    refused (exit 2).
    """
    from semanticdraw_cli.jobs import parse_shard, plan_call

    summary: list[dict] = []
    if json_:
        ctx.meta[JSON_KEY] = summary
    shard_spec = parse_shard(shard)
    _check_runtime_options(device, dtype)
    if peak_tflops is not None and not peak_tflops > 0:
        _fail(f"--peak-tflops {peak_tflops}: expected a positive number of TFLOP/s", 2)
    overrides = list(set_ or [])
    for key, value in (("sampler.seed", seed), ("sampler.images", images), ("sampler.plan", plan),
                       ("model.checkpoint", model), ("sampler.compile", compile_)):
        if value is not None:
            overrides.append(f"{key}={value}")
    overrides += _min_score_override(min_score, score)
    loaded, problems = _load_scenes(scenes, overrides, allow_outside)
    if problems:
        _fail("\n".join(problems), 2)
    call = plan_call([(str(path), scene) for path, scene in loaded], output, overwrite, shard_spec)
    if not call.jobs:
        typer.echo(f"--shard {shard}: this share is empty ({call.total} (scene, seed) jobs in all); nothing to render",
                   err=True)
        if json_:
            typer.echo(json.dumps(summary))
        return

    from semanticdraw_cli.progress import RenderProgress, print_summary
    from semanticdraw_cli.render import Renderer

    clip = _scoring_clip([job.scene for job in call.jobs], score, model_clip, device)
    renderer = Renderer(device=device, dtype=dtype, peak_tflops=peak_tflops)
    results = []
    try:
        with RenderProgress(enabled=not quiet, scenes=len(call.jobs)) as progress:
            for job in call.jobs:
                progress.start_scene(job.scene.name, list(job.seeds))
                done = renderer.render(
                    job.scene, output, on_step=progress.on_step, seeds=list(job.seeds), overwrite=overwrite,
                    on_phase=progress.on_phase,
                )
                if clip is not None:
                    from semanticdraw_cli.score import score_results

                    score_results(done, clip)
                results.extend(done)
                summary.extend(_summary_entry(result) for result in done)
                progress.finish_scene()
    except KeyboardInterrupt:
        _fail("interrupted; no partial files were written", 130)
    if not quiet:
        print_summary(results)
    if json_:
        typer.echo(json.dumps(summary, indent=2))
    if clip is not None:
        _score_gate([(str(r.png or r.scene.name), r.report["scores"]) for r in results])


def _min_score_override(min_score: float | None, score: bool | None) -> list[str]:
    """--min-score X is --set quality.min_region_score=X; it needs the scores."""
    if min_score is None:
        return []
    if score is False:
        _fail("--min-score needs the CLIP scores: drop --no-score", 2)
    return [f"quality.min_region_score={min_score}"]


def _scoring_clip(scenes: list, score: bool | None, checkpoint: str | None, device: str | None):
    """CLIP, loaded before any render when scores are asked for or a scene sets a threshold; None otherwise."""
    from semanticdraw_cli import score as scoring
    from semanticdraw_cli.errors import RenderError

    if not (score if score is not None else any(scoring.has_gate(scene) for scene in scenes)):
        return None
    try:
        return scoring.load_clip(checkpoint, device)
    except RenderError as error:
        _fail(f"error: {error}", 1)


def _score_gate(scored: list[tuple[str, dict]]) -> None:
    """Exit 3 naming every area below its threshold."""
    from semanticdraw_cli.score import GATE_EXIT_CODE, gate_message

    message = gate_message(scored)
    if message:
        _fail(message, GATE_EXIT_CODE)


@app.command()
def inspect(
    image: Annotated[Path, typer.Argument(help="A PNG written by `semanticdraw render`.")],
    json_: Annotated[bool, typer.Option("--json", help="Print scene and parameters as JSON.")] = False,
) -> None:
    """Print the scene embedded in a rendered PNG, so the image can be reproduced."""
    from semanticdraw_cli.outputs import read_embedded
    from semanticdraw_cli.scene_yaml import parse_yaml

    try:
        scene_yaml, params = read_embedded(image)
    except SceneError as error:
        _fail("\n".join(str(p) for p in error.problems), 2)
    except KeyError:
        _fail(f"{image}: no embedded scene (not written by semanticdraw render?)", 2)
    if json_:
        scene = parse_yaml(scene_yaml, str(image))[0]  # checked by read_embedded; dates print as text
        typer.echo(json.dumps({"scene": scene, "params": params}, indent=2, default=str))
    else:
        typer.echo(f"# seed {params.get('seed')}; reproduce: save as scene.yaml, then semanticdraw render scene.yaml")
        typer.echo(scene_yaml, nl=False)



@app.command()
def score(
    images: Annotated[list[Path], typer.Argument(help="PNGs written by `semanticdraw render` (any picture with --scene).")],
    scene: Annotated[Optional[Path], typer.Option("--scene", help="Scene to score against [default: the one each PNG embeds].")] = None,
    model_clip: Annotated[Optional[str], typer.Option("--model-clip", help=f"CLIP checkpoint: hub id, folder, or preset tiny [default: {CLIP_CHECKPOINT}].")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Exit 3 when a region's score (0-100) is below X (sets quality.min_region_score).")] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda, mps, cpu [default: auto].")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the scores of every image and area as JSON.")] = False,
    allow_outside: AllowOutside = False,
) -> None:
    """CLIP score (0-100) of each region's masked crop against its prompt, and of the uncovered background."""
    import json as json_lib

    from semanticdraw_cli import score as scoring
    from semanticdraw_cli.errors import RenderError, SceneError

    _check_runtime_options(device, None)
    overrides = _min_score_override(min_score, None)
    given, problems = _load_scenes([scene], overrides, allow_outside) if scene is not None else ([], [])
    if problems:
        _fail("\n".join(problems), 2)
    pictures = []
    for image in images:
        try:
            pixels = scoring.read_pixels(image)
            image_scene = given[0][1] if given else scoring.embedded_scene(image, overrides, allow_outside)
            scoring.check_canvas(image, pixels, image_scene)
            pictures.append((image, pixels, image_scene))
        except SceneError as error:
            problems.extend(str(p) for p in error.problems)
    if problems:
        _fail("\n".join(problems), 2)
    try:
        clip = scoring.load_clip(model_clip, device)
        scored = [(str(image), scoring.score_with(clip, pixels, s).to_dict()) for image, pixels, s in pictures]
    except RenderError as error:
        _fail(f"error: {error}", 1)
    if json_:
        typer.echo(json_lib.dumps([{"image": label, **scores} for label, scores in scored], indent=2))
    else:
        from rich.console import Console

        console = Console()
        for label, scores in scored:
            scoring.print_scores(console, label, scores)
    _score_gate(scored)


@app.command()
def validate(
    scenes: Annotated[list[Path], typer.Argument(help="Scene files (.yaml, .psd, .ora).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key.path=value.")] = None,
    allow_outside: AllowOutside = False,
) -> None:
    """Check scene files without loading a model: exit 0 when all are valid, 2 listing every problem.

    A YAML file next to a same-named .psd/.ora drawing holds that drawing's settings: it is checked
    together with the drawing.
    """
    from semanticdraw_cli.scene_loader import scene_warnings

    loaded, problems = _load_scenes(scenes, set_ or [], allow_outside)
    for _, scene in loaded:
        for warning in scene_warnings(scene):
            typer.echo(f"warning: {warning}", err=True)
    if problems:
        _fail("\n".join(problems), 2)
    for path, scene in loaded:
        typer.echo(f"ok: {path} ({_describe(path, scene)})")


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
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key.path=value.")] = None,
    allow_outside: AllowOutside = False,
) -> None:
    """Draw the layout (each region in its own colour, in z-order) with a legend. Loads no model.

    The picture is the layout at canvas size with the legend (a colour swatch and `name: prompt` per
    region) in a panel to its right.
    """
    from semanticdraw_cli.outputs import atomic_path, check_output_name, prepare_folder
    from semanticdraw_cli.preview import draw_preview

    if output is not None:
        check_output_name(output, (".png",))
    loaded, problems = _load_scenes([scene], set_ or [], allow_outside)
    if problems:
        _fail("\n".join(problems), 2)
    target = output or Path(f"{loaded[0][1].name}-preview.png")
    prepare_folder(target.parent)
    picture = draw_preview(loaded[0][1])
    with atomic_path(target) as temporary:
        picture.save(temporary, format="PNG")
    typer.echo(f"wrote {target}")


@app.command("import")
def import_layers(
    art: Annotated[Path, typer.Argument(help="Layered drawing (.psd, .ora): one layer per region, named by its prompt.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="YAML scene to write; masks go to OUTPUT-masks/.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key.path=value.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing scene and its masks.")] = False,
    allow_outside: AllowOutside = False,
) -> None:
    """Turn a layered drawing into a plain YAML scene with one mask PNG per region."""
    from semanticdraw_cli.layers import import_layered_scene

    try:
        written = import_layered_scene(
            art, output, command_line_paths(set_ or []), overwrite=overwrite, allow_outside=allow_outside
        )
    except OSError as error:
        _fail(f"cannot write {output}: {error}; check the disk has room", 1)
    typer.echo(f"wrote {written[0]} and {len(written) - 1} pictures in {written[1].parent}")


app.command("watch", cls=WatchCommand)(watch)


def main() -> None:
    app(prog_name="semanticdraw")


if __name__ == "__main__":
    main()
