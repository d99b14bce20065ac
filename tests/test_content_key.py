"""The content key: what changes pixels changes it, what does not leaves it, and it survives a move."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest

from semanticdraw_cli import content_key
from semanticdraw_cli.file_hashes import HashCache
from semanticdraw_cli.scene.loader import load_scene

from asset_builds import write_mask, write_scenes


def key(scene, tmp_path: Path, seed: int = 5, dtype: str = "float32") -> str:
    shared = content_key.scene_inputs(scene, HashCache(tmp_path / "hashes.json"))
    return content_key.content_key(content_key.image_inputs(shared, seed, "cpu", dtype))


@pytest.fixture
def scene_file(tmp_path) -> Path:
    return write_scenes(tmp_path / "one")[0]


def test_cosmetic_edits_keep_the_key(scene_file, tmp_path):
    before = key(load_scene(scene_file), tmp_path)
    text = scene_file.read_text().replace("name: sun", "name: the sun")
    scene_file.write_text("# a comment\n" + text)
    renamed = load_scene(scene_file, ["quality.min_region_score=20", "sampler.images=3", "sampler.max_batch=2"])
    assert key(renamed, tmp_path) == before


@pytest.mark.parametrize("change", ["regions[0].prompt=a blue moon", "sampler.steps=[0, 25]", "regions[0].blur=3"])
def test_what_changes_pixels_changes_the_key(scene_file, tmp_path, change):
    assert key(load_scene(scene_file, [change]), tmp_path) != key(load_scene(scene_file), tmp_path)


def test_the_seed_dtype_and_the_mask_bytes_change_the_key(scene_file, tmp_path):
    scene = load_scene(scene_file)
    before = key(scene, tmp_path)
    assert key(scene, tmp_path, seed=6) != before and key(scene, tmp_path, dtype="float16") != before
    write_mask(scene_file.parent / "a.png", (0, 0, 10, 10))
    assert key(scene, tmp_path) != before


def test_a_moved_checkout_keeps_its_keys(scene_file, tmp_path):
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(scene_file.parent, moved)
    assert key(load_scene(moved / "a.yaml"), tmp_path) == key(load_scene(scene_file), tmp_path)


def test_a_hub_model_is_keyed_by_its_cached_revision(scene_file, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    scene = load_scene(scene_file, ["model.checkpoint=org/model"])
    ref = tmp_path / "hub" / "models--org--model" / "refs" / "main"
    uncached = content_key.model_identity(scene, HashCache(tmp_path / "h.json"))
    assert uncached["checkpoint"] == {"hub": "org/model", "revision": None}
    ref.parent.mkdir(parents=True)
    ref.write_text("a" * 40)
    first = key(scene, tmp_path)
    ref.write_text("b" * 40)
    assert key(scene, tmp_path) != first


def test_a_local_checkpoint_is_keyed_by_its_files(scene_file, tmp_path):
    weights = tmp_path / "model"
    weights.mkdir()
    (weights / "model_index.json").write_text("{}")
    (weights / "unet.safetensors").write_bytes(b"1234")
    scene = load_scene(scene_file, [f"model.checkpoint={weights}"])
    first = key(scene, tmp_path)
    (weights / "unet.safetensors").write_bytes(b"5678")
    assert key(scene, tmp_path) != first
    identity = content_key.model_identity(scene, HashCache(tmp_path / "h.json"))
    assert sorted(identity["checkpoint"]["files"]) == ["model_index.json", "unet.safetensors"]


def test_differences_name_what_changed(scene_file, tmp_path):
    hashes = HashCache(tmp_path / "h.json")
    old = content_key.image_inputs(content_key.scene_inputs(load_scene(scene_file), hashes), 5, "cpu", "float32")
    write_mask(scene_file.parent / "a.png", (0, 0, 10, 10))
    edited = load_scene(scene_file, ["regions[0].prompt=a moon"])
    new = content_key.image_inputs(content_key.scene_inputs(edited, hashes), 5, "cuda", "float32")
    assert content_key.differences(old, new) == [
        "a.png changed", "scene fields changed: regions[0].prompt", "device cpu -> cuda"]
    assert content_key.differences({"seconds": 1}, new) == [
        "the report holds no content inputs of this version of semanticdraw"]


def test_layer_pixels_enter_the_key(scene_file, tmp_path):
    import numpy as np

    from semanticdraw_cli.scene.types import Mask

    scene = load_scene(scene_file)
    array = np.zeros((64, 64), np.float32)
    layered = dataclasses.replace(scene, regions=(dataclasses.replace(
        scene.regions[0], mask=Mask(kind="array", array=array)),))
    before = key(layered, tmp_path)
    array[0, 0] = 1.0
    assert key(layered, tmp_path) != before
