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


def with_networks(scene_file: Path, top: str = "", region: str = "", reference: str = "") -> Path:
    """The scene with `control:` entries (top level, region 0's) and a reference on region 0, and a 64x64 control
    picture (edges.png) and reference picture (look.png) beside it."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(scene_file.parent / "edges.png")
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(scene_file.parent / "look.png")
    text = scene_file.read_text()
    if region:
        text += f"    control: [{{model: {region}, image: edges.png}}]\n"
    if reference:
        text += f"    reference: {{image: look.png, adapter: {reference}}}\n"
    if top:
        text += f"control: [{{model: {top}, image: edges.png}}]\n"
    scene_file.write_text(text)
    return scene_file


def fake_controlnet(folder: Path, weights: bytes = b"1234") -> Path:
    """A local ControlNet folder as the scene checks see it: a config and a weights file (never loaded here)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(weights)
    return folder


def inputs(scene, tmp_path: Path) -> dict:
    return content_key.image_inputs(content_key.scene_inputs(scene, HashCache(tmp_path / "h.json")), 5, "cpu", "float32")


def test_a_local_controlnets_weights_change_the_key_and_differences_name_it(scene_file, tmp_path):
    fake_controlnet(scene_file.parent / "top-net")
    fake_controlnet(scene_file.parent / "region-net")
    with_networks(scene_file, top="./top-net", region="./region-net")
    scene = load_scene(scene_file)
    before = inputs(scene, tmp_path)
    assert "edges.png" in before["files"] and not any("net" in name for name in before["files"])
    assert inputs(load_scene(scene_file), tmp_path) == before  # unchanged: the same key
    (scene_file.parent / "region-net" / "diffusion_pytorch_model.safetensors").write_bytes(b"5678")
    after = inputs(scene, tmp_path)
    assert content_key.content_key(after) != content_key.content_key(before)
    [reason] = content_key.differences(before, after)
    assert reason.startswith("regions[0].control[0].model changed: files ")
    (scene_file.parent / "top-net" / "config.json").write_text('{"conditioning_channels": 3}')
    assert [r.split(" changed")[0] for r in content_key.differences(before, inputs(scene, tmp_path))] == [
        "control[0].model", "regions[0].control[0].model"]


def test_a_moved_checkout_with_a_local_controlnet_keeps_its_keys(scene_file, tmp_path):
    fake_controlnet(scene_file.parent / "net")
    with_networks(scene_file, top="./net", reference="tiny")
    moved = tmp_path / "elsewhere"
    shutil.copytree(scene_file.parent, moved)
    assert key(load_scene(moved / "a.yaml"), tmp_path) == key(load_scene(scene_file), tmp_path)


def test_a_preset_controlnet_is_keyed_by_the_version_its_folder_carries(scene_file, tmp_path, monkeypatch):
    from semanticdraw_cli.families import controlnet

    scene = load_scene(with_networks(scene_file, top="tiny"))
    before = inputs(scene, tmp_path)
    version = before["networks"]["control[0].model"]["builder"]
    assert controlnet.preset_folder("sd15", "tiny").name.endswith(f"-v{version}")
    monkeypatch.setattr(controlnet, "PRESET_REVISION", controlnet.PRESET_REVISION + 1)
    after = inputs(scene, tmp_path)
    assert content_key.content_key(after) != content_key.content_key(before)
    assert content_key.differences(before, after) == [
        f"control[0].model changed: preset tiny (builder {version}) -> preset tiny (builder {controlnet.preset_version()})"]


def test_a_reference_adapter_is_keyed_by_its_preset_version_or_its_files(scene_file, tmp_path, monkeypatch):
    from semanticdraw_cli.families import ip_adapter

    scene = load_scene(with_networks(scene_file, reference="tiny"))
    before = inputs(scene, tmp_path)
    version = before["networks"]["regions[0].reference.adapter"]["builder"]
    assert ip_adapter.preset_folder("sd15", "tiny").name.endswith(f"-v{version}")
    monkeypatch.setattr(ip_adapter, "preset_version", lambda: "99")
    assert content_key.differences(before, inputs(scene, tmp_path)) == [
        f"regions[0].reference.adapter changed: preset tiny (builder {version}) -> preset tiny (builder 99)"]
    monkeypatch.undo()
    folder = tmp_path / "ipa"
    (folder / "image_encoder").mkdir(parents=True)
    (folder / "image_encoder" / "config.json").write_text("{}")
    (folder / "ip-adapter.bin").write_bytes(b"weights")
    local = load_scene(scene_file, [f"regions[0].reference.adapter={folder / 'ip-adapter.bin'}"])
    first = inputs(local, tmp_path)
    assert sorted(first["networks"]["regions[0].reference.adapter"]["files"]) == [
        "image_encoder/config.json", "ip-adapter.bin"]
    (folder / "image_encoder" / "config.json").write_text('{"projection_dim": 8}')  # the encoder makes the embedding
    assert content_key.differences(first, inputs(local, tmp_path))[0].startswith(
        "regions[0].reference.adapter changed: files ")


def test_the_preview_decoder_never_enters_the_key(scene_file, tmp_path):
    decoder = fake_controlnet(tmp_path / "taesd")  # any local folder: previews only, never loaded for the key
    plain = inputs(load_scene(scene_file), tmp_path)
    for value in ("tiny-ae", str(decoder)):
        assert inputs(load_scene(scene_file, [f"model.preview_decoder={value}"]), tmp_path) == plain
    (decoder / "diffusion_pytorch_model.safetensors").write_bytes(b"other")
    assert inputs(load_scene(scene_file, [f"model.preview_decoder={decoder}"]), tmp_path) == plain
