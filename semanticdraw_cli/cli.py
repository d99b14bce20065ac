"""The `semanticdraw` command line. Thin: parse arguments, call the library, map failures to exit codes.

Heavy modules (torch, diffusers) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    help="Render large images from regional prompts with few-step diffusion models (SemanticDraw).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code=code)


def _load_scenes(paths: list[Path], overrides: list[str]) -> tuple[list, list[str]]:
    """Load every scene, collecting the problems of all of them (not just the first file's)."""
    from semanticdraw_cli.errors import SceneError
    from semanticdraw_cli.scene_loader import load_scene

    scenes, problems = [], []
    for path in paths:
        try:
            scenes.append(load_scene(path, overrides))
        except SceneError as error:
            problems.extend(str(p) for p in error.problems)
    return scenes, problems


@app.command()
def validate(
    scenes: Annotated[list[Path], typer.Argument(help="Scene files (.yaml, .psd, .ora).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key.path=value.")] = None,
) -> None:
    """Check scene files without loading a model: exit 0 when all are valid, 2 listing every problem."""
    from semanticdraw_cli.scene_loader import scene_warnings

    loaded, problems = _load_scenes(scenes, set_ or [])
    for scene in loaded:
        for warning in scene_warnings(scene):
            typer.echo(f"warning: {warning}", err=True)
    if problems:
        _fail("\n".join(problems), 2)
    for scene in loaded:
        typer.echo(f"ok: {scene.source} ({scene.canvas.width}x{scene.canvas.height}, {len(scene.regions)} regions)")


@app.command()
def preview(
    scene: Annotated[Path, typer.Argument(help="Scene file (.yaml, .psd, .ora).")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="PNG to write [default: NAME-preview.png].")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key.path=value.")] = None,
) -> None:
    """Draw the layout (each region in its own colour, in z-order) with a legend. Loads no model."""
    from semanticdraw_cli.preview import draw_preview

    loaded, problems = _load_scenes([scene], set_ or [])
    if problems:
        _fail("\n".join(problems), 2)
    target = output or Path(f"{loaded[0].name}-preview.png")
    draw_preview(loaded[0]).save(target)
    typer.echo(f"wrote {target}")


@app.command("import")
def import_layers(
    art: Annotated[Path, typer.Argument(help="Layered drawing (.psd, .ora): one layer per region, named by its prompt.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="YAML scene to write; masks go to OUTPUT-masks/.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key.path=value.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing scene and its masks.")] = False,
) -> None:
    """Turn a layered drawing into a plain YAML scene with one mask PNG per region."""
    from semanticdraw_cli.errors import SceneError
    from semanticdraw_cli.layers import import_layered_scene

    try:
        written = import_layered_scene(art, output, set_ or [], overwrite=overwrite)
    except SceneError as error:
        _fail("\n".join(str(p) for p in error.problems), 2)
    except OSError as error:
        _fail(f"cannot write {output}: {error}; check the folder exists and is writable", 1)
    typer.echo(f"wrote {written[0]} and {len(written) - 1} pictures in {written[1].parent}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
