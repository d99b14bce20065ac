"""`inspect` reads what `render` embedded: crafted PNGs end in exit 2 naming the file and the problem."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from semanticdraw_cli import defaults
from semanticdraw_cli.cli.app import app
from semanticdraw_cli.outputs import PARAMS_KEY, SCENE_KEY, read_embedded, write_png
from drawings import chunk, png

SCENE = "canvas: {width: 8, height: 8}\nregions: []\n"


def text(key: str, value: str | bytes, kind: bytes = b"tEXt") -> bytes:
    body = value.encode("latin-1") if isinstance(value, str) else value
    if kind == b"zTXt":
        body = b"\0" + zlib.compress(body)
    return chunk(kind, key.encode() + b"\0" + body)


def inspect(path: Path, *args: str):
    return CliRunner().invoke(app, ["inspect", str(path), *args])


def assert_refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for word in words:
        assert word in result.output, f"{word!r} not in:\n{result.output}"


def test_what_render_writes_reads_back(tmp_path):
    target = tmp_path / "x-7.png"
    write_png(target, np.zeros((8, 8, 3), np.uint8), SCENE + "note: caf\u00e9\n", {"seed": 7})
    assert read_embedded(target) == (SCENE + "note: caf\u00e9\n", {"seed": 7})
    data = json.loads(inspect(target, "--json").stdout)
    assert data == {"scene": {"canvas": {"width": 8, "height": 8}, "regions": [], "note": "caf\u00e9"}, "params": {"seed": 7}}


def test_compressed_and_dated_text_prints_as_json(tmp_path):
    path = png(tmp_path / "z.png", text(SCENE_KEY, SCENE + "when: 2024-02-28\n", b"zTXt"), text(PARAMS_KEY, "{}"))
    result = inspect(path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["scene"]["when"] == "2024-02-28"


@pytest.mark.parametrize(
    ("chunks", "words"),
    [
        ([text(SCENE_KEY, SCENE), text(PARAMS_KEY, "{not json")], f"{PARAMS_KEY}: not valid JSON"),
        ([text(SCENE_KEY, SCENE), text(PARAMS_KEY, "[1, 2]")], f"{PARAMS_KEY}: expected a JSON object, got list"),
        ([text(SCENE_KEY, SCENE), text(PARAMS_KEY, "[" * 100_000)], f"{PARAMS_KEY}: not valid JSON"),
        ([text(SCENE_KEY, "a: !!python/object/apply:os.system [echo hi]\n")], "remove the !!tag"),
        ([text(SCENE_KEY, "a: [unclosed\n")], "not valid YAML"),
        ([text(SCENE_KEY, "- a list\n")], f"{SCENE_KEY}: expected a scene mapping, got list"),
        ([text(SCENE_KEY, "a: &a [*a]\n")], "refers to a mapping or list that contains it"),
        ([text(SCENE_KEY, "x" * (8 << 20))], f"its {SCENE_KEY} text chunk is 8,388,627 bytes; at most 2,097,152"),
        ([text(SCENE_KEY, SCENE)[:-1] + b"\0"], "its tEXt chunk is damaged (bad CRC)"),
    ],
)
def test_crafted_text_chunks_exit_2(tmp_path, chunks, words):
    path = png(tmp_path / "crafted.png", *chunks)
    for args in ((), ("--json",)):
        assert_refused(inspect(path, *args), str(path), words)


def test_a_header_claiming_more_pixels_than_any_canvas_is_refused_without_decoding(tmp_path):
    path = png(tmp_path / "huge.png", text(SCENE_KEY, SCENE), size=(100_000, 100_000))
    assert_refused(inspect(path), str(path), "its header claims 100000×100000 = 10,000,000,000 pixels")


def test_a_png_of_more_chunks_than_the_limit_is_refused_naming_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_PNG_CHUNKS", 50)
    path = png(tmp_path / "chunky.png", *[chunk(b"zzZz", b"")] * 60)  # the scene would come after them
    assert_refused(inspect(path), str(path), "more than 50 PNG chunks")
    fewer = png(tmp_path / "fewer.png", *[chunk(b"zzZz", b"")] * 40, text(SCENE_KEY, SCENE))
    assert inspect(fewer).exit_code == 0


def test_compressed_text_is_inflated_with_a_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_EMBEDDED_TEXT_BYTES", 1000)
    path = png(tmp_path / "bomb.png", text(SCENE_KEY, SCENE + "#" * 5000 + "\n", b"zTXt"))
    assert_refused(inspect(path), f"its {SCENE_KEY} text chunk inflates to more than 1,000 bytes")


def test_files_that_are_not_regular_pngs_are_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    (tmp_path / "text.png").write_text("hello")
    assert_refused(inspect(tmp_path / "fifo.png"), "not a regular file (a FIFO")
    assert_refused(inspect(tmp_path / "zero.png"), "not a regular file (a character device: /dev/zero)")
    assert_refused(inspect(tmp_path / "text.png"), "not a PNG file")
    assert_refused(inspect(tmp_path / "absent.png"), "absent.png: file not found")
    cut = png(tmp_path / "cut.png", text(SCENE_KEY, SCENE))
    cut.write_bytes(cut.read_bytes()[:40])
    assert_refused(inspect(cut), "cut short")


def test_an_embedded_seed_or_scene_cannot_add_lines_or_escape_sequences(tmp_path):
    """A newline in the seed would print a live YAML line under the "reproduce" comment."""
    params = json.dumps({"seed": "7\nregions: [{prompt: injected}]\x1b[2J"})
    path = png(tmp_path / "x.png", text(SCENE_KEY, SCENE), text(PARAMS_KEY, params))
    result = inspect(path)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "# seed 7\\nregions: [{prompt: injected}]\\x1b[2J; reproduce: save as scene.yaml, then semanticdraw render scene.yaml"
    assert lines[1:] == SCENE.splitlines() and "\x1b" not in result.output
