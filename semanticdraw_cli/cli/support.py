"""What every command shares: one place that maps failures to a message and an exit code, scene loading
that collects every file's problems, and the checks of options given on the command line."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from typer.core import TyperGroup

from semanticdraw_cli.errors import RenderError, SceneError, printable_lines, problem_lines

DEBUG_KEY = "semanticdraw.debug"  # ctx.meta: show tracebacks of internal errors
JSON_KEY = "semanticdraw.json"  # ctx.meta: the JsonDocument, when --json asked for one
DEBUG_HINT = "run with `semanticdraw --debug ...` or SEMANTICDRAW_DEBUG=1 for the traceback; please report it"


class Failure(Exception):
    """A failure the command has explained: its message and exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.message, self.code = message, code


def _click_signals() -> tuple[type[BaseException], ...]:
    """The exceptions that typer's own main turns into a message and an exit code: its exits and aborts, and
    the usage errors (exit 2, "No such option: --seeds Did you mean --seed?") of whichever click it runs on.
    Typer 0.29 bundles its own click; earlier versions use the click package. Both are let through, found
    through typer's public `BadParameter` so no private module is named."""
    usage_error_bases = tuple(base for base in typer.BadParameter.__mro__ if base.__name__ == "ClickException")
    signals = (typer.Exit, typer.Abort, *usage_error_bases)
    try:
        import click
    except ImportError:  # typer >= 0.29 does not need it
        return signals
    return (*signals, click.exceptions.Exit, click.ClickException, click.Abort)


CLICK_SIGNALS = _click_signals()


class JsonDocument:
    """The one `--json` document of a call, printed on stdout once, when the command ends however it ends:
    the list of images written, or on failure {error, exit_code, images, unfinished}."""

    def __init__(self, images: list[dict] | None = None):
        self.images = images if images is not None else []  # the --json entries of the images written
        self.unfinished: Callable[[], list[dict]] = list  # the jobs left, asked for when the call fails
        self.silent = False  # a launched process other than the main one prints nothing

    def failure(self, message: str, code: int) -> dict:
        return {"error": message, "exit_code": code, "images": self.images, "unfinished": self.unfinished()}


class Commands(TyperGroup):
    """Maps every failure of a command to one message and an exit code; no traceback reaches a user."""

    def invoke(self, ctx: typer.Context):
        try:
            outcome = super().invoke(ctx)
        except (*CLICK_SIGNALS, BrokenPipeError):
            raise
        except (Exception, KeyboardInterrupt) as error:
            if debugging(ctx) and _is_bug(error):
                raise
            code, message = explain(error)
        else:
            _print_json(ctx, lambda document: document.images)
            return outcome
        typer.echo(printable_lines(message), err=True)
        _print_json(ctx, lambda document: document.failure(message, code))
        raise typer.Exit(code=code)


def _print_json(ctx: typer.Context, content: Callable[[JsonDocument], object]) -> None:
    document = ctx.meta.get(JSON_KEY)
    if document is not None and not document.silent:
        typer.echo(json.dumps(content(document), indent=2))


def _is_bug(error: BaseException) -> bool:
    return not isinstance(error, (Failure, SceneError, RenderError, OSError, KeyboardInterrupt))


def explain(error: BaseException) -> tuple[int, str]:
    """The exit code and message of a failure: 2 bad input, 1 runtime fault or bug, 130 interrupted."""
    if isinstance(error, Failure):
        return error.code, error.message
    if isinstance(error, SceneError):
        return 2, "\n".join(problem_lines(error.problems))
    if isinstance(error, (RenderError, OSError)):  # a runtime fault: no room on the disk, a file gone meanwhile
        return 1, f"error: {error}"
    if isinstance(error, KeyboardInterrupt):
        return 130, "interrupted"
    text = str(error).strip().splitlines()
    return 1, f"internal error: {type(error).__name__}{': ' + text[0] if text else ''}\n{DEBUG_HINT}"


def debugging(ctx: typer.Context) -> bool:
    """Whether a bug shows its traceback: `--debug` or SEMANTICDRAW_DEBUG=1."""
    return bool(ctx.meta.get(DEBUG_KEY)) or os.environ.get("SEMANTICDRAW_DEBUG", "") not in ("", "0")


def fail(message: str, code: int) -> NoReturn:
    raise Failure(message, code)


def embedded_or_fail(image: Path, what: str = "") -> tuple[str, dict]:
    """The scene YAML and parameters embedded in a rendered PNG (`outputs.read_embedded`); exit 2 naming
    `what` and the image when it holds none or a bad one."""
    from semanticdraw_cli.outputs import read_embedded

    try:
        return read_embedded(image)
    except SceneError as error:
        fail("\n".join(problem_lines(error.problems)), 2)
    except KeyError:
        fail(f"{what}{image}: no embedded scene (not written by semanticdraw render?)", 2)


def from_current_folder(value: str) -> str:
    """A model path typed on the command line, made absolute against the current folder; a preset name
    or hub id stays as it is. (Paths written in a scene file stay relative to the scene's folder.)"""
    import os

    from semanticdraw_cli.scene.sources import looks_local

    if looks_local(value) or os.path.exists(os.path.expanduser(value)):
        return os.path.abspath(os.path.expanduser(value))
    return value


def command_line_paths(overrides: list[str]) -> list[str]:
    """`--set` values of model.checkpoint and model.accelerator(.lora) resolved by `from_current_folder`."""
    from semanticdraw_cli.scene.yaml_text import parse_yaml

    out = []
    for text in overrides:
        key, equals, raw = text.partition("=")
        key = key.strip()
        value = parse_yaml(raw, "--set")[0] if equals and key.startswith("model.") else None  # bad YAML: reported later
        if key in ("model.checkpoint", "model.accelerator.lora") and isinstance(value, str) and value.strip():
            text = f"{key}={json.dumps(from_current_folder(value))}"
        elif key == "model.accelerator" and isinstance(value, dict) and isinstance(value.get("lora"), str):
            text = f"{key}={json.dumps({**value, 'lora': from_current_folder(value['lora'])}, default=str)}"
        out.append(text)
    return out


AllowOutside = Annotated[bool, typer.Option(
    "--allow-outside", help="Read pictures and drawings a scene names outside the scene file's folder.")]


def load_scenes(
    paths: list[Path], overrides: list[str], allow_outside: bool = False
) -> tuple[list[tuple[Path, object]], list[str]]:
    """(path, scene) of every scene that loads, and the problems of all the others (not just the first's).
    `overrides` are read as given: command-line paths are resolved where they are built (`options.scene_overrides`)."""
    from semanticdraw_cli.scene.loader import load_scene

    loaded, problems = [], []
    for path in paths:
        try:
            loaded.append((path, load_scene(path, overrides, allow_outside=allow_outside)))
        except SceneError as error:
            problems.extend(problem_lines(error.problems))
    return loaded, problems


def check_runtime_options(device: str | None, dtype: str | None, present: bool = True) -> None:
    """--device (spelling, and with `present` its presence on this machine) and --dtype are checked before any
    scene or model loads (exit 2)."""
    import re

    from semanticdraw_cli.defaults import DTYPES

    if dtype is not None and dtype not in ("auto", *DTYPES):
        fail(f"--dtype {dtype!r}: expected auto or one of {', '.join(DTYPES)}", 2)
    if device is not None and not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
        fail(f"--device {device!r}: expected auto, cpu, mps, cuda or cuda:N", 2)
    if present and device not in (None, "auto", "cpu"):
        from semanticdraw_cli.devices import device_problem

        problem = device_problem(device)
        if problem:
            fail(f"--device {device}: {problem}", 2)
