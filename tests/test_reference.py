"""A region's `reference` in a scene file (scene/reference.py): bad input exits 2 naming the key and the
problem, before any model loads; a valid one reaches the Scene, its dict and the files the scene reads."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli.cli.app import app
from semanticdraw_cli.families import presets
from semanticdraw_cli.scene.dicts import scene_from_dict, scene_to_dict
from semanticdraw_cli.scene.loader import load_scene
from semanticdraw_cli.scene.reads import scene_reads


def fake_adapter(folder: Path, width: int) -> Path:
    """An IP-Adapter-shaped weights file for a UNet of cross-attention `width`, and an image encoder config:
    what the checks read, without any model."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "image_encoder").mkdir(exist_ok=True)
    (folder / "image_encoder" / "config.json").write_text("{}")
    path = folder / "ip-adapter.safetensors"
    save_file({"image_proj.proj.weight": np.zeros((4 * width, 8), np.float32),
               "ip_adapter.1.to_k_ip.weight": np.zeros((4, width), np.float32)}, str(path))
    return path


def scene_file(folder: Path, reference: str, family: str = "sd15") -> Path:
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(folder / "look.png")
    path = folder / "scene.yaml"
    path.write_text(textwrap.dedent(f"""\
        canvas: {{width: 64, height: 48}}
        model: {{family: {family}, checkpoint: tiny, accelerator: none}}
        regions:
          - {{name: fox, prompt: a fox, mask: {{rect: [0, 0, 32, 48]}}, reference: {reference}}}
        """))
    return path


def refused(path: Path, *words: str) -> None:
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, f"{word!r} not in:\n{result.output}"


@pytest.fixture
def sd15_width() -> int:
    """The tiny sd15 UNet's cross-attention width, its preset built so its config can be read."""
    folder = presets.ensure_preset("sd15", "tiny")
    return json.loads((folder / "unet" / "config.json").read_text())["cross_attention_dim"]


def test_a_missing_picture_is_refused_naming_the_key_and_the_file(tmp_path, sd15_width):
    fake_adapter(tmp_path / "ipa", sd15_width)
    path = scene_file(tmp_path, "{image: gone.png, adapter: ./ipa/ip-adapter.safetensors}")
    refused(path, "regions[0].reference.image", "file not found", "gone.png")


def test_a_missing_adapter_is_refused(tmp_path):
    refused(scene_file(tmp_path, "{image: look.png, adapter: ./nowhere/ip-adapter.safetensors}"),
            "regions[0].reference.adapter", "file not found")
    refused(scene_file(tmp_path, "{image: look.png}"), "regions[0].reference.adapter", "missing")


def test_an_adapter_without_its_image_encoder_is_refused(tmp_path, sd15_width):
    adapter = fake_adapter(tmp_path / "ipa", sd15_width)
    (adapter.parent / "image_encoder" / "config.json").unlink()
    refused(scene_file(tmp_path, "{image: look.png, adapter: ./ipa/ip-adapter.safetensors}"),
            "regions[0].reference.adapter", "no image encoder")


def test_an_adapter_of_another_family_is_refused_before_loading(tmp_path, sd15_width):
    fake_adapter(tmp_path / "ipa", 2048)  # SDXL's width
    refused(scene_file(tmp_path, "{image: look.png, adapter: ./ipa/ip-adapter.safetensors}"),
            "regions[0].reference.adapter", "cross-attention width 2048", f"width {sd15_width}")


def test_a_family_without_reference_pictures_and_a_bad_weight_are_refused(tmp_path, sd15_width):
    fake_adapter(tmp_path / "ipa", sd15_width)
    refused(scene_file(tmp_path, "{image: look.png, adapter: ./ipa/ip-adapter.safetensors}", family="sd3"),
            "regions[0].reference", "sd3 family takes no reference pictures")
    refused(scene_file(tmp_path, "{image: look.png, weight: 5, adapter: ./ipa/ip-adapter.safetensors}"),
            "regions[0].reference.weight", "5")


def test_a_valid_reference_reaches_the_scene_its_dict_and_its_reads(tmp_path, sd15_width):
    adapter = fake_adapter(tmp_path / "ipa", sd15_width)
    path = scene_file(tmp_path, "{image: look.png, weight: 0.4, adapter: ./ipa/ip-adapter.safetensors}")
    scene = load_scene(path)
    reference = scene.regions[0].reference
    assert (reference.image, reference.weight, reference.adapter) == (tmp_path / "look.png", 0.4, str(adapter))
    assert scene_from_dict(scene_to_dict(scene), path).regions[0].reference == reference
    roles = {read.path: (read.role, read.model) for read in scene_reads(path, scene)}
    assert roles[tmp_path / "look.png"] == (f"the reference picture of region 'fox' in {path}", False)
    assert roles[adapter][1] is True  # read when the model loads, not watched


def fake_flux_adapter(folder: Path, width: int) -> Path:
    """An IP-Adapter-shaped weights file in XLabs' FLUX.1 layout for a transformer of text width `width`."""
    from safetensors.numpy import save_file

    (folder / "image_encoder").mkdir(parents=True, exist_ok=True)
    (folder / "image_encoder" / "config.json").write_text("{}")
    path = folder / "ip_adapter.safetensors"
    save_file({"ip_adapter_proj_model.proj.weight": np.zeros((4 * width, 8), np.float32),
               "double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight": np.zeros((4, width), np.float32)},
              str(path))
    return path


def flux_width() -> int:
    folder = presets.ensure_preset("flux", "tiny")
    return json.loads((folder / "transformer" / "config.json").read_text())["joint_attention_dim"]


def test_flux_takes_an_xlabs_layout_adapter_and_refuses_a_unet_one_before_loading(tmp_path, sd15_width):
    width = flux_width()
    fake_flux_adapter(tmp_path / "xlabs", width)
    path = scene_file(tmp_path, "{image: look.png, adapter: ./xlabs/ip_adapter.safetensors}", family="flux")
    assert load_scene(path).regions[0].reference.adapter == str(tmp_path / "xlabs" / "ip_adapter.safetensors")
    fake_adapter(tmp_path / "ipa", width)  # a UNet's adapter, even of the same width
    refused(scene_file(tmp_path, "{image: look.png, adapter: ./ipa/ip-adapter.safetensors}", family="flux"),
            "regions[0].reference.adapter", "for a UNet of cross-attention width", "(flux) has a FLUX.1 transformer",
            "use an IP-Adapter made for flux")
    refused(scene_file(tmp_path, "{image: look.png, adapter: ./xlabs/ip_adapter.safetensors}"),
            "regions[0].reference.adapter", f"for a FLUX.1 transformer of text width {width}",
            f"(sd15) has a UNet of cross-attention width {sd15_width}")


def test_the_tiny_adapter_goes_with_the_tiny_model_preset(tmp_path):
    path = scene_file(tmp_path, "{image: look.png, adapter: tiny}", family="flux")
    assert load_scene(path).regions[0].reference.adapter == "tiny"
    assert scene_from_dict(scene_to_dict(load_scene(path)), path).regions[0].reference.adapter == "tiny"
    small = scene_file(tmp_path, "{image: look.png, adapter: tiny}")
    small.write_text(small.read_text().replace("checkpoint: tiny", "checkpoint: small"))
    refused(small, "regions[0].reference.adapter", "tiny is a random IP-Adapter for the tiny model preset",
            "model.checkpoint is 'small'")
