"""The `watch` command's terminal lines (cli/watch.py), fed the loop's events: what each render prints."""

from __future__ import annotations

from pathlib import Path

from semanticdraw_cli.cli.watch import TerminalLines
from semanticdraw_cli.watch import Event

SMALL = "scene.yaml: regions[0] (dot): no latent pixel at any step (the region is smaller than the 8-pixel latent grid)"


def rendered(render: int, warnings: tuple[str, ...] = ()) -> Event:
    return Event("rendered", render, seconds={"denoise": 0.5, "total": 0.75},
                 outputs=(Path("out/scene-latest.png"), Path("out/scene-latest.json")), warnings=warnings)


def test_a_renders_warnings_print_once_after_its_line_and_not_when_quiet(capsys):
    lines = TerminalLines(quiet=False)
    lines(rendered(1, (SMALL,)))
    lines(rendered(2))
    printed = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in printed] == ["render 1", "warning", "render 2"]
    assert printed[1] == f"warning: {SMALL}"
    TerminalLines(quiet=True)(rendered(3, (SMALL,)))
    assert capsys.readouterr().err == ""  # as `render -q`


def test_a_hires_first_pass_is_a_line_before_the_render_line(capsys):
    lines = TerminalLines(quiet=False)
    lines(Event("first_pass", 1, outputs=(Path("out/scene-latest.png"),)))
    lines(rendered(1))
    printed = capsys.readouterr().err.splitlines()
    assert printed[0] == "render 1: pass 1 of 2, upscaled: out/scene-latest.png"
    assert printed[1].startswith("render 1: first render;")
