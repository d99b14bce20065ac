"""The GitHub Actions workflow of the README's CI section, run here: its `semanticdraw` commands on two 64x64
scenes of the tiny preset (with the tiny CLIP and a gate of 0), in this process, the shell's part (variables,
globs, `>`) done by `shell`."""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from asset_builds import invoke, write_scenes

ROOT = Path(__file__).resolve().parent.parent
MAKE_GOLDENS = "semanticdraw render assets/*.yaml -o out --golden goldens --update-golden"

pytestmark = pytest.mark.slow


def workflow() -> dict:
    text = (ROOT / "README.md").read_text()
    start = text.index("```yaml\nname: assets\n") + len("```yaml\n")
    return yaml.safe_load(text[start:text.index("```", start)])


def commands(shard: int) -> list[str]:
    """The workflow's `semanticdraw` steps, for one job of its matrix."""
    steps = workflow()["jobs"]["render"]["steps"]
    runs = [step["run"] for step in steps if step.get("run", "").startswith("semanticdraw ")]
    return [run.replace("${{ matrix.shard }}", str(shard)) for run in runs]


def shell(command: str):
    """What bash does with the workflow's one-line commands: `$VAR`, globs, `> FILE`; then the CLI runs here."""
    words = [os.path.expandvars(word) if "$" in word else word for word in shlex.split(command)]
    target = words[words.index(">") + 1] if ">" in words else None
    words = words[:words.index(">")] if target else words
    expanded = [match for word in words[1:] for match in (sorted(glob.glob(word)) if "*" in word else [word])]
    done = invoke(*expanded)
    if target:
        Path(target).write_text(done.stdout)
    return done


def test_the_readme_workflow_renders_each_share_then_nothing(tmp_path, monkeypatch):
    assert MAKE_GOLDENS in (ROOT / "README.md").read_text()
    matrix = workflow()["jobs"]["render"]["strategy"]["matrix"]["shard"]
    write_scenes(tmp_path)
    (tmp_path / "scenes").rename(tmp_path / "assets")
    made = invoke("render", tmp_path / "assets" / "a.yaml", tmp_path / "assets" / "b.yaml",
                  "-o", tmp_path / "out", "--golden", tmp_path / "goldens", "--update-golden", "--quiet")
    assert made.exit_code == 0, made.output
    shutil.rmtree(tmp_path / "out")  # a runner without the outputs' cache
    monkeypatch.chdir(tmp_path)
    for name, value in {"MIN_SCORE": "0", "CLIP": "tiny", "CI": "true", "DEVICE": "cpu"}.items():
        monkeypatch.setenv(name, value)
    for shard in matrix:
        for command in commands(shard):
            done = shell(command)
            assert done.exit_code == 0, f"{command}\n{done.output}"
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert len(summary) == 1 and "skipped" not in summary[0] and "scores" in summary[0]
    assert sorted(path.name for path in (tmp_path / "out").glob("*.png")) == ["a-5.png", "b-5.png"]
    for command in commands(matrix[0]):  # the next run, its cache restored: nothing renders
        done = shell(command)
        assert done.exit_code == 0, f"{command}\n{done.output}"
    assert [entry["skipped"] for entry in json.loads((tmp_path / "summary.json").read_text())] == ["unchanged"]
