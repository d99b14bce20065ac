"""The `semanticdraw` command line. Thin: parse arguments, call the library, map failures to exit codes.

Heavy modules (torch, diffusers) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from semanticdraw_cli.defaults import OUTPUT_DIR

app = typer.Typer(
    help="Render large images from regional prompts with few-step diffusion models (SemanticDraw).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from semanticdraw_cli import __version__

        typer.echo(f"semanticdraw {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Render large images from regional prompts with few-step diffusion models (SemanticDraw)."""


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


def _parse_shard(shard: str | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        index = count = 0
    if not (count >= 1 and 1 <= index <= count):
        _fail(f"--shard {shard!r}: expected K/N with 1 <= K <= N, e.g. --shard 2/4", 2)
    return index, count


def _check_runtime_options(device: str | None, dtype: str | None) -> None:
    """--device and --dtype are checked before any scene or model loads (exit 2)."""
    import re

    from semanticdraw_cli.defaults import DTYPES

    if dtype is not None and dtype not in ("auto", *DTYPES):
        _fail(f"--dtype {dtype!r}: expected auto or one of {', '.join(DTYPES)}", 2)
    if device is not None and not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        _fail(f"--device {device!r}: expected auto, cpu, mps, cuda or cuda:N", 2)


def _select_jobs(scenes: list, shard: tuple[int, int] | None) -> list[tuple[object, list[int]]]:
    """(scene, seeds) to render; a shard takes every N-th (scene, seed) job, in a fixed order."""
    from semanticdraw_cli.render import image_seeds

    jobs = [(position, scene, seed) for position, scene in enumerate(scenes) for seed in image_seeds(scene)]
    if shard is not None:
        index, count = shard
        jobs = [job for n, job in enumerate(jobs) if n % count == index - 1]
    selected: dict[int, tuple[object, list[int]]] = {}
    for position, scene, seed in jobs:
        selected.setdefault(position, (scene, []))[1].append(seed)
    return list(selected.values())


@app.command()
def render(
    scenes: Annotated[list[Path], typer.Argument(help="Scene files (.yaml, .psd, .ora).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME-SEED.png and NAME-SEED.json.")] = Path(OUTPUT_DIR),
    seed: Annotated[Optional[int], typer.Option(help="Seed of the first image [default: the scene's].")] = None,
    images: Annotated[Optional[int], typer.Option(help="Images per scene, seeds seed..seed+N-1, batched together.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Checkpoint: hub id, folder, .safetensors, or preset tiny|small|full-random.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda, mps, cpu [default: auto].")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float16, bfloat16, float32 [default: float16 on cuda].")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: key.path=value (repeatable).")] = None,
    plan: Annotated[Optional[str], typer.Option(help="default | reference | regions.")] = None,
    compile_: Annotated[Optional[bool], typer.Option(
        "--compile/--no-compile",
        help="torch.compile the network: static shapes, CUDA graphs on CUDA [default: the scene's].",
    )] = None,
    peak_tflops: Annotated[Optional[float], typer.Option(
        help="The device's peak TFLOP/s, for the report's share of it [default: measured once by a matrix product]."
    )] = None,
    shard: Annotated[Optional[str], typer.Option(help="Render only the K-th of N shares of the (scene, seed) jobs: K/N.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")] = False,
) -> None:
    """Render scenes to NAME-SEED.png (scene embedded) and NAME-SEED.json (timing report)."""
    import json as json_lib

    from semanticdraw_cli.errors import RenderError
    from semanticdraw_cli.outputs import output_paths

    shard_spec = _parse_shard(shard)
    _check_runtime_options(device, dtype)
    if peak_tflops is not None and not peak_tflops > 0:
        _fail(f"--peak-tflops {peak_tflops}: expected a positive number of TFLOP/s", 2)
    overrides = list(set_ or [])
    for key, value in (("sampler.seed", seed), ("sampler.images", images), ("sampler.plan", plan),
                       ("model.checkpoint", model), ("sampler.compile", compile_)):
        if value is not None:
            overrides.append(f"{key}={value}")
    loaded, problems = _load_scenes(scenes, overrides)
    if problems:
        _fail("\n".join(problems), 2)
    jobs = _select_jobs(loaded, shard_spec)
    if not overwrite:
        existing = [str(p) for scene, seeds in jobs for s in seeds for p in output_paths(output, scene.name, s) if p.exists()]
        if existing:
            _fail("refusing to overwrite existing outputs (pass --overwrite):\n  " + "\n  ".join(existing), 2)

    from semanticdraw_cli.progress import RenderProgress
    from semanticdraw_cli.render import Renderer

    renderer = Renderer(device=device, dtype=dtype, peak_tflops=peak_tflops)
    results = []
    try:
        with RenderProgress(enabled=not quiet, scenes=len(jobs)) as progress:
            for scene, seeds in jobs:
                progress.start_scene(scene.name, seeds)
                results.extend(renderer.render(scene, output, on_step=progress.on_step, seeds=seeds))
                progress.finish_scene()
    except RenderError as error:
        _fail(f"error: {error}", 1)
    except KeyboardInterrupt:
        _fail("interrupted; no partial files were written", 130)
    if not quiet:
        from semanticdraw_cli.progress import print_summary

        print_summary(results)
    if json_:
        summary = [
            {"scene": str(r.scene.source), "seed": r.seed, "png": str(r.png), "report": str(r.json),
             "seconds": r.report["seconds"]["total"], "unet_calls": r.report["unet_calls"]}
            for r in results
        ]
        typer.echo(json_lib.dumps(summary, indent=2))


@app.command()
def inspect(
    image: Annotated[Path, typer.Argument(help="A PNG written by `semanticdraw render`.")],
    json_: Annotated[bool, typer.Option("--json", help="Print scene and parameters as JSON.")] = False,
) -> None:
    """Print the scene embedded in a rendered PNG, so the image can be reproduced."""
    import json as json_lib

    import yaml
    from PIL import UnidentifiedImageError

    from semanticdraw_cli.outputs import read_embedded

    try:
        scene_yaml, params = read_embedded(image)
    except (FileNotFoundError, IsADirectoryError):
        _fail(f"{image}: no such file", 2)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        _fail(f"{image}: not a readable PNG ({error})", 2)
    except KeyError:
        _fail(f"{image}: no embedded scene (not written by semanticdraw render?)", 2)
    if json_:
        typer.echo(json_lib.dumps({"scene": yaml.safe_load(scene_yaml), "params": params}, indent=2))
    else:
        typer.echo(f"# seed {params.get('seed')}; reproduce: save as scene.yaml, then semanticdraw render scene.yaml")
        typer.echo(scene_yaml, nl=False)



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
