"""`semanticdraw validate` and `preview` end to end: exit 0 when valid, 2 naming every problem, no traceback."""

from __future__ import annotations

import struct
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli import defaults
from semanticdraw_cli.cli import app

SCENES = Path(__file__).resolve().parent.parent / "scenes"
CANVAS = "canvas: {width: 64, height: 48}\n"
ONE_REGION = "regions:\n  - {prompt: a fox, mask: {rect: [0, 0, 32, 48]}}\n"


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def write(folder: Path, text: str, name: str = "scene.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def assert_refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for word in words:
        assert word in result.output, f"{word!r} not in:\n{result.output}"


def test_valid_scene_exits_0(tmp_path):
    path = write(tmp_path, CANVAS + ONE_REGION)
    result = run("validate", str(path))
    assert result.exit_code == 0 and f"ok: {path} (64x48, 1 regions)" in result.output


def test_every_example_scene_validates():
    result = run("validate", *map(str, sorted(SCENES.glob("*.yaml"))))
    assert result.exit_code == 0, result.output
    assert result.output.count("ok: ") == len(list(SCENES.glob("*.yaml"))) and "warning" not in result.output


def test_malformed_yaml(tmp_path):
    path = write(tmp_path, CANVAS + "regions:\n  - {prompt: a fox, mask: {rect: [0, 0, 32, 48]}\n")
    assert_refused(run("validate", str(path)), f"{path}:", "not valid YAML")


def test_missing_mask_file(tmp_path):
    path = write(tmp_path, CANVAS + "regions:\n  - {prompt: a fox, mask: fox.png}\n")
    assert_refused(run("validate", str(path)), f"{path}:3: regions[0].mask: file not found", "fox.png")


def test_missing_scene_file(tmp_path):
    assert_refused(run("validate", str(tmp_path / "nothing.yaml")), "nothing.yaml", "file not found")


def test_corrupt_image(tmp_path):
    (tmp_path / "fox.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a picture")
    path = write(tmp_path, CANVAS + "regions:\n  - {prompt: a fox, mask: fox.png}\n")
    assert_refused(run("validate", str(path)), "regions[0].mask: cannot decode fox.png")


def test_corrupt_background_image(tmp_path):
    (tmp_path / "bg.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken jpeg")
    path = write(tmp_path, CANVAS + "background: {image: bg.jpg}\n" + ONE_REGION)
    assert_refused(run("validate", str(path)), "background.image: cannot decode bg.jpg")


def test_decompression_bomb(tmp_path):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 64 * 1000, 48 * 1000, 8, 0, 0, 0, 0)  # 3×10^9 pixels, same aspect
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                        + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))
    path = write(tmp_path, CANVAS + "regions:\n  - {prompt: a fox, mask: bomb.png}\n")
    assert_refused(run("validate", str(path)), "bomb.png", "64000×48000", f"limit of {defaults.MAX_MASK_IMAGE_PIXELS:,}")


def test_mask_of_another_aspect_ratio(tmp_path):
    Image.new("L", (100, 100), 255).save(tmp_path / "fox.png")
    path = write(tmp_path, CANVAS + "regions:\n  - {prompt: a fox, mask: fox.png}\n")
    assert_refused(run("validate", str(path)), "100×100", "64×48")


def test_wrong_types(tmp_path):
    path = write(tmp_path, CANVAS + "sampler: {seed: lucky, images: [1]}\n" + ONE_REGION)
    assert_refused(run("validate", str(path)), ":2: sampler.seed: expected a whole number, got 'lucky'",
                   "sampler.images: expected a whole number")


def test_negative_and_zero_sizes(tmp_path):
    path = write(tmp_path, "canvas: {width: -64, height: 0}\n"
                           "regions:\n  - {prompt: a fox, mask: {rect: [0, 0, -5, 10]}}\n")
    assert_refused(run("validate", str(path)), "canvas.width: must be positive, got -64",
                   "canvas.height: must be positive, got 0", "regions[0].mask.rect: width and height must be positive")


def test_canvas_not_a_multiple_of_8_names_the_nearest_sizes(tmp_path):
    path = write(tmp_path, "canvas: {width: 1283, height: 768}\n" + ONE_REGION)
    assert_refused(run("validate", str(path)), "canvas.width: 1283 is not a multiple of 8", "1283 -> 1280 or 1288")


def test_absent_label_colour_lists_the_colours_present(tmp_path):
    image = Image.new("RGB", (64, 48), (255, 255, 255))
    image.paste((22, 163, 74), (0, 0, 64, 40))
    image.save(tmp_path / "labels.png")
    path = write(tmp_path, CANVAS + 'regions:\n  - {prompt: a fox, mask: {label_map: labels.png, color: "#f59e0b"}}\n')
    assert_refused(run("validate", str(path)), "colour #f59e0b does not occur in labels.png",
                   "most common first: #16a34a (83.3%), #ffffff (16.7%)")


def test_zero_regions(tmp_path):
    assert_refused(run("validate", str(write(tmp_path, CANVAS + "regions: []\n"))), "regions: no regions")


def test_polygon_with_fewer_than_3_points(tmp_path):
    path = write(tmp_path, CANVAS + "regions:\n  - {prompt: a fox, mask: {polygon: [[0, 0], [10, 10]]}}\n")
    assert_refused(run("validate", str(path)), "regions[0].mask.polygon: a polygon needs at least 3 points, got 2")


def test_absurd_canvas_and_region_count_name_the_limit(tmp_path):
    big = write(tmp_path, "canvas: {width: 16384, height: 16384}\n" + ONE_REGION, "big.yaml")
    assert_refused(run("validate", str(big)), f"over the limit of {defaults.MAX_CANVAS_PIXELS:,}")
    huge = write(tmp_path, "canvas: {width: 100000, height: 64}\n" + ONE_REGION, "huge.yaml")
    assert_refused(run("validate", str(huge)), f"limit of {defaults.MAX_CANVAS_SIDE} pixels")
    many = "regions:\n" + "  - {prompt: a, mask: {rect: [0, 0, 8, 8]}}\n" * (defaults.MAX_REGIONS + 1)
    assert_refused(run("validate", str(write(tmp_path, CANVAS + many, "many.yaml"))),
                   f"{defaults.MAX_REGIONS + 1} regions; at most {defaults.MAX_REGIONS} are allowed")


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, CANVAS + "samplr: {seed: 3}\n" + ONE_REGION)
    assert_refused(run("validate", str(path)), ":2: samplr: unknown key 'samplr'", "did you mean 'sampler'?")


def test_bad_override(tmp_path):
    path = write(tmp_path, CANVAS + ONE_REGION)
    assert_refused(run("validate", str(path), "--set", "sampler.seed"), "--set: 'sampler.seed': no '='")
    assert_refused(run("validate", str(path), "--set", "sampler.seed=-1"), "sampler.seed: must be between 0")
    assert run("validate", str(path), "--set", "sampler.seed=7").exit_code == 0


def test_command_line_model_paths_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    """--model / --set paths: the current folder; the same path written in the scene: the scene's folder."""
    from semanticdraw_cli.cli import _load_scenes

    scenes, work = tmp_path / "scenes", tmp_path / "work"
    (scenes / "mine").mkdir(parents=True)
    (work / "mine").mkdir(parents=True)
    (work / "fast.safetensors").write_bytes(b"")
    path = write(scenes, CANVAS + ONE_REGION + "model: {checkpoint: ./mine}\n")
    monkeypatch.chdir(work)

    def model_of(*overrides):
        loaded, problems = _load_scenes([path], list(overrides))
        assert problems == []
        return loaded[0].model

    assert model_of().checkpoint == str(scenes / "mine")
    assert model_of("model.checkpoint=./mine").checkpoint == model_of("model.checkpoint=mine").checkpoint == str(work / "mine")
    assert model_of("model.checkpoint=tiny").checkpoint == "tiny"
    assert model_of("model.accelerator.lora=fast.safetensors").accelerator.lora == str(work / "fast.safetensors")
    mapping = model_of("model.accelerator={lora: ./fast.safetensors, weight: 0.5}").accelerator
    assert (mapping.lora, mapping.weight) == (str(work / "fast.safetensors"), 0.5)
    result = run("render", str(path), "--model", "./gone", "-o", str(tmp_path / "out"))
    assert_refused(result, f"model.checkpoint: folder not found: {work / 'gone'}")


def test_model_typo_is_refused_with_the_preset_it_resembles(tmp_path):
    result = run("render", str(write(tmp_path, CANVAS + ONE_REGION)), "--model", "tinny", "-o", str(tmp_path))
    assert_refused(result, "model.checkpoint: 'tinny' is neither a preset", "did you mean 'tiny'?")


def test_problems_of_several_files_are_all_listed(tmp_path):
    good = write(tmp_path, CANVAS + ONE_REGION, "good.yaml")
    bad1 = write(tmp_path, "canvas: {width: 65, height: 48}\n" + ONE_REGION, "bad1.yaml")
    bad2 = write(tmp_path, CANVAS + "regions: []\n", "bad2.yaml")
    result = run("validate", str(good), str(bad1), str(bad2))
    assert_refused(result, f"{bad1}:1: canvas.width", f"{bad2}:2: regions")


def test_warnings_exit_0(tmp_path):
    path = write(tmp_path, CANVAS + "regions:\n  - {name: ghost, prompt: a ghost, mask: {rect: [500, 500, 8, 8]}}\n")
    result = run("validate", str(path))
    assert result.exit_code == 0
    assert "warning:" in result.output and "regions[0] (ghost)" in result.output and "empty" in result.output


def test_preview_writes_a_canvas_size_png(tmp_path):
    out = tmp_path / "layout.png"
    result = run("preview", str(SCENES / "two-subjects.yaml"), "-o", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.size == (512, 512)


@pytest.mark.parametrize("text", ["canvas: {width: 63, height: 48}\n" + ONE_REGION, CANVAS + "regions: []\n"])
def test_preview_refuses_bad_scenes(tmp_path, text):
    out = tmp_path / "layout.png"
    assert_refused(run("preview", str(write(tmp_path, text)), "-o", str(out)), "scene.yaml")
    assert not out.exists()
