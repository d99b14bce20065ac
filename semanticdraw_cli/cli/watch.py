"""The `watch` command: its options, its terminal lines, and `--serve`'s optional port.

The loop itself is `watch.WatchLoop`; this module wires it to the terminal and the page. It lives
beside cli/app.py (registered there) to keep that module small; heavy modules load inside the command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from semanticdraw_cli import defaults
from semanticdraw_cli.cli import options
from semanticdraw_cli.cli.support import AllowOutside, check_runtime_options, fail, load_scenes
from semanticdraw_cli.errors import printable, printable_lines

PHASES = ("scene", "layout", "load", "masks", "encode", "denoise", "decode", "write")  # the line's order


class WatchCommand(TyperCommand):
    """`--serve` takes an optional port: alone (or before something that is not a number) it means the default."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        fixed, options_end = [], False
        for i, arg in enumerate(args):
            options_end = options_end or arg == "--"
            if arg == "--serve" and not options_end and not (i + 1 < len(args) and args[i + 1].isdigit()):
                arg = f"--serve={defaults.SERVE_PORT}"
            fixed.append(arg)
        return super().parse_args(ctx, fixed)


def watch(
    scene: Annotated[Path, typer.Argument(help="Scene file (.yaml, .psd, .ora).")],
    output: options.Output = Path(defaults.OUTPUT_DIR),
    model: options.Model = None,
    device: options.Device = None,
    dtype: options.Dtype = None,
    seed: options.Seed = None,
    set_: options.Set = None,
    plan: options.Plan = None,
    allow_outside: AllowOutside = False,
    keep: Annotated[bool, typer.Option("--keep", help="Also keep every render as NAME-0001.png, NAME-0002.png, ...")] = False,
    preview_steps: Annotated[bool, typer.Option(
        "--preview-steps", help="After each sampling step, show the current estimate in NAME-latest.png.")] = False,
    serve: Annotated[Optional[int], typer.Option(
        "--serve", metavar="[PORT]", min=0, max=65535, show_default=False,
        help=f"Serve a page on 127.0.0.1 that shows the latest image, layout and warnings as they change "
             f"(port {defaults.SERVE_PORT} unless given; 0: any free port).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per render (problems still print).")] = False,
) -> None:
    """Render a scene, then again each time it or a file it reads is saved: the picture follows the drawing.

    Watched: the scene file, its masks, label maps, background, control and reference pictures, a layered
    drawing and its settings. The model loads once; each save recomputes only what it changed (prompts by
    text, masks by content), and a save during a render abandons it for the newer one. NAME-latest.png and
    NAME-latest.json are replaced after each render, NAME-layout.png as soon as a save is seen. A save
    that leaves the scene invalid prints its problems and keeps the last image. Renders the scene's
    first image (its seed). Type `r NAME[,NAME...]` and Enter to re-roll those regions of the latest
    image and keep the rest (as render --reroll). Ctrl-C stops (exit 130).
    """
    check_runtime_options(device, dtype)
    overrides = options.scene_overrides(set_, seed=seed, plan=plan, model=model)  # every reload reads these
    _, problems = load_scenes([scene], overrides, allow_outside)  # at the start, a scene that does not load is refused
    if problems:
        fail("\n".join(problems), 2)
    from semanticdraw_cli.outputs import prepare_folder
    from semanticdraw_cli.render import Renderer
    from semanticdraw_cli.watch import WatchLoop, WatchOptions

    prepare_folder(output, "-o names the folder for NAME-latest.png")
    settings = WatchOptions(scene, output, tuple(overrides), allow_outside, keep, preview_steps)
    loop = WatchLoop(settings, Renderer(device=device, dtype=dtype), [TerminalLines(quiet)])
    server = _start_server(serve, loop) if serve is not None else None
    _read_keys(loop)
    try:
        loop.run()
    except KeyboardInterrupt:
        fail("interrupted; no partial files were written", 130)
    finally:
        if server is not None:
            server.close()


def _read_keys(loop) -> None:
    """The terminal's `r NAME[,NAME...]` (then Enter) re-rolls regions, in a thread that ends with the command."""
    import sys
    import threading

    from semanticdraw_cli.watch_reroll import read_keys

    say = lambda text: typer.echo(text, err=True)  # noqa: E731
    threading.Thread(target=read_keys, args=(sys.stdin, lambda names: loop.reroll(names), say), daemon=True,
                     name="semanticdraw-keys").start()


def _start_server(port: int, loop):
    from semanticdraw_cli.serve import PageServer

    try:
        server = PageServer(port)
    except OSError as error:
        fail(f"--serve {port}: cannot listen on 127.0.0.1:{port} ({error.strerror or error}); choose another port", 2)
    loop.listen(server.publish)
    server.on_reroll = loop.reroll
    typer.echo(f"page: {server.url}", err=True)
    return server


class TerminalLines:
    """One line per render on stderr: what changed, what was recomputed, seconds per phase; then the render's
    warnings, one line each."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self._watched: tuple[Path, ...] = ()

    def __call__(self, event) -> None:
        if event.kind == "invalid":
            typer.echo(printable_lines("\n".join(event.problems)), err=True)
            typer.echo("the scene does not load; keeping the last image until the next save", err=True)
        elif self.quiet:
            return
        elif event.kind == "watching":
            files = tuple(file for file in event.files if file.exists())
            if files != self._watched:
                self._watched = files
                typer.echo(f"watching {', '.join(_shown(f) for f in files)} (Ctrl-C to stop)", err=True)
        elif event.kind == "phase":
            typer.echo(f"{printable(event.text)}...", err=True)
        elif event.kind == "first_pass":
            typer.echo(f"render {event.render}: pass 1 of 2, upscaled: {_shown(event.outputs[0])}", err=True)
        elif event.kind == "abandoned":
            typer.echo(f"render {event.render}: abandoned after step {event.step} of {event.steps} for a newer save",
                       err=True)
        elif event.kind == "rendered":
            typer.echo(render_line(event), err=True)
            for warning in event.warnings:  # as `render` prints its report's
                typer.echo(f"warning: {printable_lines(warning)}", err=True)


def render_line(event) -> str:
    """`render 2: fox.png changed; recomputed mask 1, plan 1; scene 0.01 ... write 0.02 s; image in 0.41 s: out/x-latest.png`."""
    changed = ", ".join(_shown(file) for file in event.files) + " changed" if event.files else "reloaded"
    changed = "first render" if event.render == 1 else changed
    recomputed = ", ".join(f"{stage} {count}" for stage, count in sorted(event.recomputed.items())) or "nothing"
    seconds = event.seconds
    phases = ", ".join(f"{phase} {seconds[phase]:.2f}" for phase in PHASES
                       if phase in seconds and (phase != "load" or seconds[phase] > 0))
    return (f"render {event.render}: {changed}; recomputed {recomputed}; {phases} s; "
            f"image in {seconds['total']:.2f} s: {_shown(event.outputs[0])}")


def _shown(path: Path) -> str:
    relative = os.path.relpath(path)
    return printable(relative if not relative.startswith("..") else str(path))
