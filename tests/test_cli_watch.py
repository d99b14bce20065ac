"""The `watch` command's terminal lines (cli/watch.py), fed the loop's events: what each render prints."""

from __future__ import annotations

from pathlib import Path

from semanticdraw_cli.cli.watch import TerminalLines
from semanticdraw_cli.watch import Event


def rendered(render: int) -> Event:
    return Event("rendered", render, seconds={"denoise": 0.5, "total": 0.75},
                 outputs=(Path("out/scene-latest.png"), Path("out/scene-latest.json")))


def test_a_hires_first_pass_is_a_line_before_the_render_line(capsys):
    lines = TerminalLines(quiet=False)
    lines(Event("first_pass", 1, outputs=(Path("out/scene-latest.png"),)))
    lines(rendered(1))
    printed = capsys.readouterr().err.splitlines()
    assert printed[0] == "render 1: pass 1 of 2, upscaled: out/scene-latest.png"
    assert printed[1].startswith("render 1: first render;")
