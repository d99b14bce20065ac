"""The scene's `model` section: `model.preview_decoder` read, refused with exit 2 naming the key, kept in the scene
dict, and out of the content key (it changes no pixel of an image)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from semanticdraw_cli import content_key
from semanticdraw_cli.cli.app import app
from semanticdraw_cli.errors import SceneError
from semanticdraw_cli.file_hashes import HashCache
from semanticdraw_cli.scene.dicts import scene_from_dict, scene_to_dict
from semanticdraw_cli.scene.loader import load_scene
from semanticdraw_cli.scene.reads import scene_reads

SCENE = """\
canvas: {width: 64, height: 48}
model: {family: FAMILY, checkpoint: tiny, preview_decoder: DECODER}
regions:
  - {prompt: a fox, mask: {rect: [0, 0, 32, 48]}}
"""


def write(folder: Path, decoder: str, family: str = "sd15") -> Path:
    path = folder / "scene.yaml"
    path.write_text(textwrap.dedent(SCENE.replace("FAMILY", family).replace("DECODER", decoder)))
    return path


def refused(path: Path, *words: str) -> None:
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in ("model.preview_decoder", *words):
        assert word in result.output, f"{word!r} not in:\n{result.output}"


def test_tiny_ae_is_read_and_absence_is_the_full_vae(tmp_path):
    assert load_scene(write(tmp_path, "tiny-ae")).model.preview_decoder == "tiny-ae"
    assert load_scene(write(tmp_path, "none")).model.preview_decoder is None
    assert load_scene(write(tmp_path, "tiny-ae"), ["model.preview_decoder=none"]).model.preview_decoder is None


def test_a_folder_becomes_absolute_and_a_model_read(tmp_path):
    (tmp_path / "taesd").mkdir()
    scene = load_scene(write(tmp_path, "./taesd"))
    assert scene.model.preview_decoder == str(tmp_path / "taesd")
    reads = [read for read in scene_reads(None, scene) if read.path == tmp_path / "taesd"]
    assert len(reads) == 1 and reads[0].model and "model.preview_decoder" in reads[0].role


def test_a_hub_id_is_kept_for_the_load(tmp_path):
    assert load_scene(write(tmp_path, "madebyollin/taesd")).model.preview_decoder == "madebyollin/taesd"


@pytest.mark.parametrize("value, words", [
    ("tiny_ae", ["'tiny_ae' is neither tiny-ae nor an existing folder or a hub id"]),
    ("./missing", ["'./missing' is neither"]),
    ("3", ["expected tiny-ae, a folder or a hub id, got"]),
])
def test_a_bad_value_exits_2_naming_the_key(tmp_path, value, words):
    refused(write(tmp_path, value), *words)


def test_klein_has_no_tiny_autoencoder(tmp_path):
    path = tmp_path / "scene.yaml"
    klein = SCENE.replace("FAMILY", "klein").replace("DECODER", "tiny-ae")
    path.write_text(klein.replace("64, height: 48", "64, height: 64"))  # FLUX.2: sides in multiples of 16
    refused(path, "the klein family has no tiny autoencoder", "remove it")


def test_the_key_round_trips_through_the_scene_dict_and_is_absent_when_unset(tmp_path):
    scene = load_scene(write(tmp_path, "tiny-ae"))
    data = scene_to_dict(scene)
    assert data["model"]["preview_decoder"] == "tiny-ae"
    assert scene_from_dict(data, scene.source).model.preview_decoder == "tiny-ae"
    assert "preview_decoder" not in scene_to_dict(load_scene(write(tmp_path, "none")))["model"]


def test_the_key_is_no_part_of_the_content_key_nor_of_the_model_identity(tmp_path):
    """It changes no final pixel, so `render --changed` renders nothing again for it, and a Renderer shares one
    loaded model (and its cached stages) between scenes that differ only in it."""
    hashes = HashCache(tmp_path / "hashes.json")
    keys = {content_key.content_key(content_key.image_inputs(content_key.scene_inputs(load_scene(write(tmp_path, value)),
                                                                                       hashes), 3, "cpu", "float32"))
            for value in ("tiny-ae", "none")}
    assert len(keys) == 1
    with_decoder, without = load_scene(write(tmp_path, "tiny-ae")).model, load_scene(write(tmp_path, "none")).model
    assert with_decoder == without and hash(with_decoder) == hash(without)


def test_a_scene_dict_with_a_wrong_type_raises_scene_error(tmp_path):
    data = {"canvas": {"width": 64, "height": 48}, "model": {"checkpoint": "tiny", "preview_decoder": ["tiny-ae"]},
            "regions": [{"prompt": "a fox", "mask": {"rect": [0, 0, 32, 48]}}]}
    with pytest.raises(SceneError, match="model.preview_decoder"):
        scene_from_dict(data, tmp_path / "scene.yaml")
