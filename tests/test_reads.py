"""What a scene reads: the one list `watch` watches and every command's outputs are checked against."""

from __future__ import annotations

from PIL import Image

from semanticdraw_cli.scene.loader import load_scene
from semanticdraw_cli.scene.reads import scene_reads
from semanticdraw_cli.watched import scene_inputs

SCENE = """\
canvas: {width: 64, height: 64}
model: {checkpoint: ./model, accelerator: {lora: lora.safetensors, scheduler: lcm}}
background: {image: paper.png}
regions:
  - {name: fox, prompt: a red fox, mask: fox.png}
  - {name: hills, prompt: hills, mask: {label_map: layout.png, color: "#00ff00"}}
  - {name: sky, prompt: sky, mask: {rect: [0, 0, 64, 8]}}
"""


def test_every_file_a_scene_names_has_its_role_and_model_files_are_not_watched(tmp_path):
    for name in ("fox.png", "paper.png"):
        Image.new("L", (64, 64), 255).save(tmp_path / name)
    Image.new("RGB", (64, 64), (0, 255, 0)).save(tmp_path / "layout.png")
    (tmp_path / "model").mkdir()
    (tmp_path / "lora.safetensors").write_bytes(b"")
    path = tmp_path / "scene.yaml"
    path.write_text(SCENE)
    reads = {read.path: read for read in scene_reads(path, load_scene(path))}
    roles = {file.name: read.role for file, read in reads.items()}
    assert roles["scene.yaml"] == f"the scene file {path}"
    assert roles["scene.psd"] == f"the drawing scene.psd beside {path}"
    assert roles["fox.png"] == f"the mask of region 'fox' in {path}"
    assert roles["layout.png"] == f"the label map of region 'hills' in {path}"
    assert roles["paper.png"] == f"the background picture of {path}"
    assert roles["model"] == f"the model file (model.checkpoint) of {path}"
    assert roles["lora.safetensors"] == f"the model file (model.accelerator.lora) of {path}"
    watched = scene_inputs(path, load_scene(path))
    assert watched == {file for file, read in reads.items() if not read.model}
    assert tmp_path / "model" not in watched and tmp_path / "fox.png" in watched


def test_presets_and_hub_ids_are_not_files_of_the_scene(tmp_path):
    for checkpoint in ("tiny", "owner/model"):
        path = tmp_path / "scene.yaml"
        path.write_text(f"canvas: {{width: 64, height: 64}}\nmodel: {{checkpoint: {checkpoint}}}\n"
                        "regions: [{prompt: a, mask: {rect: [0, 0, 8, 8]}}]\n")
        reads = scene_reads(path, load_scene(path))
        assert [read.path.name for read in reads] == ["scene.yaml", "scene.yml", "scene.psd", "scene.ora"]
