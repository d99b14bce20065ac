"""What every command shares: usage errors exit 2 with typer's own message."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from semanticdraw_cli.cli.app import app


def run(*args: str):
    return CliRunner().invoke(app, list(args))


USAGE_MISTAKES = [  # (arguments, words the message must hold)
    (["render", "--seeds", "3", "scene.yaml"], ["No such option", "--seeds", "--seed"]),
    (["render", "--images", "abc", "scene.yaml"], ["--images", "integer"]),
    (["render", "scene.yaml", "--seed"], ["--seed", "requires an argument"]),
    (["watch", "--sed", "1", "scene.yaml"], ["No such option", "--sed", "--seed"]),
    (["watch", "--seed", "x1", "scene.yaml"], ["--seed", "integer"]),
    (["watch", "scene.yaml", "--output"], ["--output", "requires an argument"]),
    (["validate", "--sett", "a=1", "scene.yaml"], ["No such option", "--sett", "--set"]),
    (["validate", "scene.yaml", "--set"], ["--set", "requires an argument"]),
    (["score", "--min-score", "high", "image.png"], ["--min-score", "number"]),
    (["score", "--scen", "s.yaml", "image.png"], ["No such option", "--scen", "--scene"]),
    (["score", "image.png", "--model-clip"], ["--model-clip", "requires an argument"]),
    (["rendr", "scene.yaml"], ["No such command", "rendr"]),
]


@pytest.mark.parametrize("args, words", USAGE_MISTAKES, ids=[" ".join(args) for args, _ in USAGE_MISTAKES])
def test_usage_mistakes_exit_2_with_typers_message(args, words):
    result = run(*args)
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output, (word, result.output)
    assert "internal error" not in result.output and "report it" not in result.output
