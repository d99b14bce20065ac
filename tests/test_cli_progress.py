"""Render progress: bars on a terminal; elsewhere a plain line per phase, per step, and on long steps' windows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from semanticdraw_cli.cli.app import app
from semanticdraw_cli.cli.progress import RenderProgress
from semanticdraw_cli.defaults import PROGRESS_NOTE_SECONDS


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(progress: RenderProgress, clock: Clock) -> None:
    """One scene: load, two steps of 4 windows (the second one slow), decode, write."""
    with progress:
        progress.start_scene("fox\x1b[2J", [7])
        progress.on_phase("preparing masks", 0, None)
        progress.on_phase("loading the model", 0, None)
        progress.on_step(0, 2)
        for done in range(1, 5):
            clock.now += 0.5
            progress.on_call(0, done, 4)
        progress.on_step(1, 2)
        for done in range(1, 5):
            clock.now += PROGRESS_NOTE_SECONDS / 2 + 0.1  # a line after every second call
            progress.on_call(1, done, 4)
        progress.on_step(2, 2)
        progress.on_phase("decoding", 0, 2)
        progress.on_phase("decoding", 2, 2)
        progress.on_phase("writing", 0, None)
        progress.finish_scene()


def test_without_a_terminal_a_line_per_phase_step_and_long_step():
    output, clock = io.StringIO(), Clock()
    feed(RenderProgress(True, 1, Console(file=output, force_terminal=False), clock), clock)
    name = "fox\\x1b[2J (seed 7)"
    assert output.getvalue().splitlines() == [
        f"{name}: preparing masks",
        f"{name}: loading the model",
        f"{name}: sampling, 2 steps",
        f"{name}: step 1/2 in 2.0 s",
        f"{name}: step 2/2: 2/4 windows in 10 s",
        f"{name}: step 2/2 in 20.4 s",
        f"{name}: decoding",
        f"{name}: writing",
        f"{name}: done in 22.4 s",
    ]


def test_quiet_prints_nothing_with_or_without_a_terminal():
    for terminal in (False, True):
        output, clock = io.StringIO(), Clock()
        feed(RenderProgress(False, 1, Console(file=output, force_terminal=terminal), clock), clock)
        assert output.getvalue() == ""


def test_on_a_terminal_the_bar_shows_the_windows_of_the_step(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    output, clock = io.StringIO(), Clock()
    progress = RenderProgress(True, 1, Console(file=output, force_terminal=True, width=200), clock)
    with progress:
        progress.start_scene("fox", [7])
        progress.on_step(0, 2)
        progress.on_call(0, 3, 4)
        assert progress.progress.tasks[-1].description == "fox (seed 7): sampling, step 1: 3/4 windows"
    assert "fox (seed 7): sampling" in output.getvalue() and "step 1/2 in" not in output.getvalue()


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_on_a_terminal_under_ci_lines_replace_the_bars(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    output, clock = io.StringIO(), Clock()
    feed(RenderProgress(True, 1, Console(file=output, force_terminal=True, width=200), clock), clock)
    assert output.getvalue().splitlines()[0] == "fox\\x1b[2J (seed 7): preparing masks"


def test_jsonl_prints_one_json_event_per_phase_and_step():
    output, clock = io.StringIO(), Clock()
    feed(RenderProgress(True, 1, Console(file=output, force_terminal=True), clock, mode="jsonl"), clock)
    events = [json.loads(line) for line in output.getvalue().splitlines()]
    assert [(event["event"], event.get("phase") or event.get("step")) for event in events] == [
        ("scene", None), ("phase", "preparing masks"), ("phase", "loading the model"), ("phase", "sampling"),
        ("step", 1), ("windows", 2), ("step", 2), ("phase", "decoding"), ("phase", "writing"), ("done", None)]
    assert all(event["scene"] == "fox\x1b[2J" and event["seeds"] == [7] for event in events)
    assert events[4]["seconds"] == 2.0 and events[5]["windows_done"] == 2 and events[-1]["seconds"] == 22.4


def test_progress_none_prints_nothing():
    output, clock = io.StringIO(), Clock()
    feed(RenderProgress(True, 1, Console(file=output, force_terminal=False), clock, mode="none"), clock)
    assert output.getvalue() == ""


@pytest.mark.slow
def test_render_prints_progress_on_stderr_and_keeps_stdout_json(tmp_path):
    scene = tmp_path / "s.yaml"
    scene.write_text("canvas: {width: 64, height: 64}\nmodel: {checkpoint: tiny}\nsampler: {steps: [0, 25]}\n"
                     "regions: [{prompt: a fox, mask: {rect: [0, 0, 32, 64]}}]\n")
    result = CliRunner().invoke(app, ["render", str(scene), "-o", str(tmp_path), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert [Path(entry["png"]).name for entry in json.loads(result.stdout)] == ["s-2024.png"]
    lines = result.stderr.splitlines()
    for line in ("s (seed 2024): sampling, 2 steps", "s (seed 2024): decoding", "s (seed 2024): writing"):
        assert line in lines, result.stderr
    assert any(line.startswith("s (seed 2024): step 2/2 in ") for line in lines)
