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

from semanticdraw_cli.cli.support import DEBUG_KEY, AllowOutside, Commands, embedded_or_fail
from semanticdraw_cli.cli import options
from semanticdraw_cli.cli.assets import check, compare
from semanticdraw_cli.cli.render import render
from semanticdraw_cli.cli.support import fail as _fail
from semanticdraw_cli.cli.support import load_scenes as _load_scenes
from semanticdraw_cli.cli.score import score
from semanticdraw_cli.cli.watch import WatchCommand, watch
from semanticdraw_cli.errors import printable, printable_lines
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


app.command()(render)


@app.command()
def inspect(
    image: Annotated[Path, typer.Argument(help="A PNG written by `semanticdraw render`.")],
    json_: Annotated[bool, typer.Option("--json", help="Print scene and parameters as JSON.")] = False,
) -> None:
    """Print the scene embedded in a rendered PNG, so the image can be reproduced."""
    from semanticdraw_cli.scene.yaml_text import parse_yaml

    scene_yaml, params = embedded_or_fail(image)
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
app.command("check")(check)
app.command("compare")(compare)


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
