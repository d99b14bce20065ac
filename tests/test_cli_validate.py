"""`semanticdraw validate` and `preview` end to end: exit 0 when valid, 2 naming every problem, no traceback."""

from __future__ import annotations

import os
import struct
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli import defaults
from semanticdraw_cli.cli.app import app

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
    assert result.exit_code == 0 and f"ok: {path} (64x48, 1 region)" in result.output


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
    from semanticdraw_cli.cli.options import scene_overrides
    from semanticdraw_cli.cli.support import load_scenes

    scenes, work = tmp_path / "scenes", tmp_path / "work"
    (scenes / "mine").mkdir(parents=True)
    (work / "mine").mkdir(parents=True)
    (work / "fast.safetensors").write_bytes(b"")
    path = write(scenes, CANVAS + ONE_REGION + "model: {checkpoint: ./mine}\n")
    monkeypatch.chdir(work)

    def model_of(*overrides):
        loaded, problems = load_scenes([path], scene_overrides(list(overrides)))
        assert problems == []
        return loaded[0][1].model

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


def test_a_region_smaller_than_the_latent_grid_is_a_warning(tmp_path):
    dot = "  - {name: dot, prompt: a dot, mask: {rect: [14, 14, 4, 4]}}\n"  # between the centres 12 and 20
    path = write(tmp_path, CANVAS + ONE_REGION + dot)
    result = run("validate", str(path))
    assert result.exit_code == 0, result.output
    assert "regions[1] (dot): mask is smaller than the latent grid" in result.output
    assert "regions[0]" not in result.output


def test_a_scene_whose_masks_would_exhaust_memory_is_refused_naming_the_numbers(tmp_path, monkeypatch):
    from semanticdraw_cli.scene.checks import mask_memory

    assert mask_memory(8192, 8192, 256, 5) > 290 * 1024**3 > defaults.MAX_MASK_BYTES  # the valid scene that ran out
    monkeypatch.setattr(defaults, "MAX_MASK_BYTES", 1024**3)  # the same refusal at a size a test can afford to get wrong
    regions = "".join(f"  - {{prompt: p{i}, mask: {{rect: [{i * 16}, 0, 16, 1024]}}}}\n" for i in range(64))
    path = write(tmp_path, "canvas: {width: 1024, height: 1024}\nregions:\n" + regions)
    result = run("validate", str(path))
    assert_refused(result, f"{path}:2: regions: 64 regions on a 1024x1024 canvas with 5 steps need about 1.2 GiB "
                           "for their masks, over the limit of 1.0 GiB")
    assert run("validate", str(path), "--set", "canvas.width=512", "--set", "canvas.height=512").exit_code == 0


def test_override_of_a_prompt_with_a_colon_is_taken_as_written(tmp_path):
    from semanticdraw_cli.scene.loader import load_scene

    path = write(tmp_path, CANVAS + ONE_REGION)
    result = run("validate", str(path), "--set", "regions[0].prompt=a cat: black")
    assert result.exit_code == 0 and "missing" not in result.output, result.output
    assert load_scene(path, ["regions[0].prompt=a cat: black #1"]).regions[0].prompt == "a cat: black #1"
    assert load_scene(path, ["background.prompt=null"]).background.prompt is None


def test_preview_writes_the_layout_and_a_legend_panel(tmp_path):
    out = tmp_path / "new" / "folder" / "layout.png"  # a missing folder is created, as render does
    result = run("preview", str(SCENES / "two-subjects.yaml"), "-o", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.height == 512 and image.width > 512
    assert sorted(p.name for p in out.parent.iterdir()) == ["layout.png"]


@pytest.mark.parametrize(("name", "words"), [(".", "is a folder"), ("layout", "no extension"),
                                             ("layout.txt", "unknown extension '.txt'")])
def test_preview_output_names_are_checked(tmp_path, name, words):
    out = tmp_path / name
    assert_refused(run("preview", str(SCENES / "two-subjects.yaml"), "-o", str(out)), str(out), words, ".png")


def test_preview_is_written_atomically(tmp_path, monkeypatch):
    out = tmp_path / "layout.png"
    out.write_bytes(b"the previous preview")

    def interrupted_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half a png")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    result = run("preview", str(SCENES / "two-subjects.yaml"), "-o", str(out))
    assert result.exit_code == 130 and "interrupted" in result.output
    assert out.read_bytes() == b"the previous preview" and sorted(os.listdir(tmp_path)) == ["layout.png"]


@pytest.mark.parametrize("text", ["canvas: {width: 63, height: 48}\n" + ONE_REGION, CANVAS + "regions: []\n"])
def test_preview_refuses_bad_scenes(tmp_path, text):
    out = tmp_path / "layout.png"
    assert_refused(run("preview", str(write(tmp_path, text)), "-o", str(out)), "scene.yaml")
    assert not out.exists()


# --- paths a scene names: names no file can have, places outside the scene's folder ---------------

PATH_KEYS = {  # key -> scene text naming PATH there
    "regions[0].mask": CANVAS + "regions:\n  - {prompt: a fox, mask: PATH}\n",
    "regions[0].mask.image": CANVAS + "regions:\n  - {prompt: a fox, mask: {image: PATH}}\n",
    "regions[0].mask.label_map": CANVAS + "regions:\n  - {prompt: a fox, mask: {label_map: PATH, color: [1, 2, 3]}}\n",
    "background.image": CANVAS + "background: {image: PATH}\n" + ONE_REGION,
    "model.checkpoint": CANVAS + "model: {checkpoint: PATH}\n" + ONE_REGION,
    "model.accelerator.lora": CANVAS + "model: {accelerator: {lora: PATH}}\n" + ONE_REGION,
    "layers": "layers: PATH\n",
}
BAD_NAMES = {  # YAML text of the path -> words of the problem
    '"x\\0.safetensors"': "NUL byte",
    "~nosuchuser-xyz/x.safetensors": "no user 'nosuchuser-xyz'",
    "x" * 300 + ".safetensors": "too long for a file name",
    "loop.safetensors": "symlink loop",
}


@pytest.mark.parametrize("key", PATH_KEYS)
@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_no_file_can_have_exit_2_naming_the_key(tmp_path, key, name):
    (tmp_path / "loop.safetensors").symlink_to(tmp_path / "loop2.safetensors")
    (tmp_path / "loop2.safetensors").symlink_to(tmp_path / "loop.safetensors")
    path = write(tmp_path, PATH_KEYS[key].replace("PATH", name))
    assert_refused(run("validate", str(path)), f"{key}: ", BAD_NAMES[name])


def outside_setup(tmp_path: Path) -> Path:
    """tmp_path/scene/ holds the scene; a picture, a label map and a drawing lie next to that folder."""
    folder = tmp_path / "scene"
    folder.mkdir()
    Image.new("L", (64, 48), 255).save(tmp_path / "fox.png")
    Image.new("RGB", (64, 48), (9, 9, 9)).save(tmp_path / "labels.png")
    (folder / "link.png").symlink_to(tmp_path / "fox.png")
    return folder


@pytest.mark.parametrize(
    ("text", "key", "shown"),
    [
        (CANVAS + "regions:\n  - {prompt: a fox, mask: ../fox.png}\n", "regions[0].mask", "../fox.png"),
        (CANVAS + "regions:\n  - {prompt: a fox, mask: {image: link.png}}\n", "regions[0].mask.image", "link.png"),
        (CANVAS + "background: {image: ../fox.png}\n" + ONE_REGION, "background.image", "../fox.png"),
        (CANVAS + "regions:\n  - {prompt: a, mask: {label_map: ../labels.png, color: '#ff0000'}}\n",
         "regions[0].mask.label_map", "../labels.png"),
    ],
)
def test_pictures_outside_the_scene_folder_need_allow_outside(tmp_path, text, key, shown):
    path = write(outside_setup(tmp_path), text)
    result = run("validate", str(path))
    assert_refused(result, f"{key}: {shown}: resolves to {tmp_path}", "outside the scene's folder", "--allow-outside")
    assert "#090909" not in result.output  # the outside label map was not read
    allowed = run("validate", str(path), "--allow-outside")
    assert allowed.exit_code == (2 if "labels" in text else 0), allowed.output
    assert "outside the scene's folder" not in allowed.output


def test_absolute_paths_outside_are_refused_before_reading(tmp_path):
    path = write(tmp_path, CANVAS + "regions:\n  - {prompt: a fox, mask: /etc/passwd}\n")
    assert_refused(run("validate", str(path)), "regions[0].mask: /etc/passwd: resolves to /etc/passwd, outside")
    assert_refused(run("validate", str(path), "--allow-outside"), "cannot decode passwd")


def test_every_reading_command_has_allow_outside(tmp_path):
    path = write(outside_setup(tmp_path), CANVAS + "regions:\n  - {prompt: a fox, mask: ../fox.png}\n")
    out = tmp_path / "out"
    assert_refused(run("render", str(path), "-o", str(out), "--model", "tiny"), "outside", "--allow-outside")
    assert_refused(run("preview", str(path), "-o", str(tmp_path / "p.png")), "outside", "--allow-outside")
    assert run("preview", str(path), "-o", str(tmp_path / "p.png"), "--allow-outside").exit_code == 0
    assert not out.exists()


def test_the_python_api_refuses_outside_paths_unless_allowed(tmp_path):
    from semanticdraw_cli.errors import SceneError
    from semanticdraw_cli.render import render
    from semanticdraw_cli.scene.loader import load_scene

    path = write(outside_setup(tmp_path), CANVAS + "regions:\n  - {prompt: a fox, mask: ../fox.png}\n")
    with pytest.raises(SceneError, match="outside the scene's folder"):
        render(path, tmp_path / "out")
    assert load_scene(path, allow_outside=True).regions[0].mask.path == tmp_path / "fox.png"


# --- files that are not regular files or are too large ---------------------------------------------


def special_files(tmp_path: Path) -> dict[str, Path]:
    """A FIFO (opening it would block) and symlinks to endless devices."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "urandom").symlink_to("/dev/urandom")
    return {"a FIFO": tmp_path / "fifo", "a character device: /dev/zero": tmp_path / "zero",
            "a character device: /dev/urandom": tmp_path / "urandom"}


def test_scene_files_that_are_not_regular_files_are_refused_without_reading(tmp_path):
    for what, special in special_files(tmp_path).items():
        scene = tmp_path / f"{special.name}.yaml"
        scene.symlink_to(special)
        assert_refused(run("validate", str(scene)), f"{scene}: not a regular file ({what}", "refusing to read it")


@pytest.mark.parametrize(("key", "text"), [
    ("regions[0].mask", CANVAS + "regions:\n  - {prompt: a fox, mask: NAME}\n"),
    ("regions[0].mask", CANVAS + "regions:\n  - {prompt: a fox, mask: {label_map: NAME, color: [1, 2, 3]}}\n"),
    ("background.image", CANVAS + "background: {image: NAME}\n" + ONE_REGION),
])
def test_pictures_that_are_not_regular_files_are_refused(tmp_path, key, text):
    """Links to devices point outside the scene's folder too: refused for that first, unless allowed."""
    for what, special in special_files(tmp_path).items():
        path = write(tmp_path, text.replace("NAME", special.name), f"{special.name}.yaml")
        kind = what.split(":")[0]
        assert_refused(run("validate", str(path), "--allow-outside"), f"{key}: ", f"not a regular file ({kind})")
        assert_refused(run("preview", str(path), "-o", str(tmp_path / "p.png"), "--allow-outside"), "not a regular file")
        if what != "a FIFO":
            assert_refused(run("validate", str(path)), f"resolves to {what.split(': ')[1]}, outside the scene's folder")


def test_inputs_over_their_byte_limit_are_refused_naming_the_limit(tmp_path, monkeypatch):
    Image.new("L", (64, 48), 255).save(tmp_path / "fox.png")
    path = write(tmp_path, CANVAS + "regions:\n  - {prompt: a fox, mask: fox.png}\n")
    monkeypatch.setattr(defaults, "MAX_PICTURE_BYTES", 50)
    assert_refused(run("validate", str(path)), "regions[0].mask:", "fox.png: is ", "a picture may have at most 50")
    monkeypatch.setattr(defaults, "MAX_SCENE_BYTES", 50)
    size = path.stat().st_size
    assert_refused(run("validate", str(path)), f"{path}: is {size} bytes; a scene file may have at most 50")


def test_keys_and_values_with_escape_sequences_are_printed_escaped(tmp_path):
    path = write(tmp_path, CANVAS + '"bad\\x1b[31mkey\\nfake: line": 1\n' + ONE_REGION)
    result = run("validate", str(path))
    assert_refused(result, "bad\\x1b[31mkey\\nfake: line")
    assert "\x1b" not in result.output and not any(line.startswith("fake") for line in result.output.splitlines())


def test_a_file_name_with_control_characters_is_printed_escaped(tmp_path):
    path = write(tmp_path, CANVAS + ONE_REGION, name="x\x1b[2J\ry.yaml")
    result = run("validate", str(path))
    assert result.exit_code == 0 and "x\\x1b[2J\\ry.yaml (64x48, 1 region)" in result.output
    assert "\x1b" not in result.output and "\r" not in result.output


def test_thousands_of_unknown_keys_list_the_first_and_count_the_rest(tmp_path, monkeypatch):
    """100,000 unknown keys printed 100,002 lines and worked out a did-you-mean for each (difflib: seconds)."""
    import difflib

    hinted = []
    original = difflib.get_close_matches
    monkeypatch.setattr(difflib, "get_close_matches", lambda word, *a, **k: hinted.append(word) or original(word, *a, **k))
    keys = "".join(f"samplr{i}: 0\n" for i in range(3000))
    result = run("validate", str(write(tmp_path, CANVAS + ONE_REGION + keys)))
    assert_refused(result, ":4: samplr0: unknown key 'samplr0'", f": \u2026 and {3000 - defaults.MAX_PROBLEMS_LISTED:,} more problems")
    assert len(result.output.splitlines()) == defaults.MAX_PROBLEMS_LISTED + 1
    assert len(hinted) <= defaults.MAX_PROBLEMS_LISTED


def test_preview_never_writes_over_the_label_map_it_draws(tmp_path):
    for name in ("palette.yaml", "palette-layout.png"):
        (tmp_path / name).write_bytes((SCENES / name).read_bytes())
    label_map, scene = tmp_path / "palette-layout.png", tmp_path / "palette.yaml"
    result = run("preview", str(scene), "-o", str(label_map))
    assert_refused(result, f"{label_map}: the output would overwrite the label map of region 'hills' in {scene}")
    assert label_map.read_bytes() == (SCENES / "palette-layout.png").read_bytes()
