"""Region LoRAs in a scene (`scene/loras.py`): read, hashed and checked by their tensor names before any
model loads; `validate` refuses a missing, corrupt, foreign or 17th LoRA with exit 2 naming the file."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lora_files import make_lora
from semanticdraw_cli.cli.app import app
from semanticdraw_cli.errors import SceneError
from semanticdraw_cli.scene import loras
from semanticdraw_cli.scene.dicts import scene_from_dict, scene_to_dict
from semanticdraw_cli.scene.loader import load_scene
from semanticdraw_cli.scene.reads import scene_reads


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """Tiny-preset LoRAs of three networks: a UNet (sd15, width 32), SD3's joint blocks, FLUX.2's blocks (klein)."""
    folder = tmp_path_factory.mktemp("loras")
    return {family: make_lora(family, folder / f"{family}.safetensors") for family in ("sd15", "sd3", "klein")}


def scene_file(folder: Path, family: str, loras_text: str, extra: str = "") -> Path:
    path = folder / "scene.yaml"
    path.write_text(textwrap.dedent(f"""\
        canvas: {{width: 256, height: 128}}
        model: {{family: {family}, checkpoint: tiny}}
        regions:
          - {{prompt: a fox, mask: {{rect: [0, 0, 128, 128]}}, loras: {loras_text}}}
          - {{prompt: a cat, mask: {{rect: [128, 0, 128, 128]}}}}
        """) + extra, encoding="utf-8")
    return path


def validate(path: Path):
    return CliRunner().invoke(app, ["validate", str(path)])


def assert_refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    for word in words:
        assert word in result.output, f"{word!r} not in:\n{result.output}"


def test_the_tensor_names_say_which_family_a_lora_is_for(made):
    assert loras.families_of(loras.header(made["sd15"])) == ("sd15", "sd2", "sdxl")  # a UNet; the width tells more
    assert loras.families_of(loras.header(made["sd3"])) == ("sd3", "flux", "klein")  # double-stream blocks only
    assert loras.families_of(loras.header(made["klein"])) == ("klein",)
    assert loras.families_of({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": [4, 3072]}) == ("flux",)
    assert loras.families_of({"text_encoder_2.x.lora_A.weight": [4, 8], "unet.up_blocks.0.y.lora_A.weight": [4, 8]}) \
        == ("sdxl",)


def test_a_region_lora_is_hashed_recorded_and_watched(made, tmp_path):
    shutil.copy(made["sd15"], tmp_path / "fox.safetensors")
    scene = load_scene(scene_file(tmp_path, "sd15", "[{lora: fox.safetensors, weight: 0.8}]"))
    (fox,) = scene.regions[0].loras
    assert (fox.lora, fox.weight) == (str(tmp_path / "fox.safetensors"), 0.8)
    assert fox.sha256 == loras.file_digest(tmp_path / "fox.safetensors") and scene.regions[1].loras == ()
    assert any(read.path == tmp_path / "fox.safetensors" and not read.model for read in scene_reads(None, scene))
    again = scene_from_dict(scene_to_dict(scene), scene.source)  # the embedded scene renders the same LoRA
    assert again.regions == scene.regions
    (tmp_path / "fox.safetensors").write_bytes((tmp_path / "fox.safetensors").read_bytes()[:-1] + b"\0")
    with pytest.raises(SceneError, match="other bytes than the scene records"):
        scene_from_dict(scene_to_dict(scene), scene.source)


def test_defaults_loras_apply_to_every_region_that_names_none(made, tmp_path):
    shutil.copy(made["sd15"], tmp_path / "style.safetensors")
    scene = load_scene(scene_file(tmp_path, "sd15", "[]", "defaults: {loras: [style.safetensors]}\n"))
    assert scene.regions[0].loras == () and scene.regions[1].loras[0].lora == str(tmp_path / "style.safetensors")


def test_a_missing_lora_is_refused_naming_it(tmp_path):
    assert_refused(validate(scene_file(tmp_path, "sd15", "[{lora: gone.safetensors}]")),
                   "regions[0].loras[0].lora", "file not found", "gone.safetensors")


def test_a_corrupt_lora_is_refused_naming_it(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert_refused(validate(scene_file(tmp_path, "sd15", "[broken.safetensors]")),
                   "regions[0].loras[0].lora", "broken.safetensors", "not a readable LoRA")


def test_a_lora_of_another_family_is_refused_naming_it(made, tmp_path):
    shutil.copy(made["sd15"], tmp_path / "unet.safetensors")
    assert_refused(validate(scene_file(tmp_path, "klein", "[unet.safetensors]")),
                   "unet.safetensors", "is a LoRA for sd15 or sd2 or sdxl, not klein")


def test_a_lora_of_another_width_is_refused_when_the_checkpoint_config_is_on_disk(made, tmp_path):
    shutil.copy(made["sd15"], tmp_path / "narrow.safetensors")
    from semanticdraw_cli.families import presets

    presets.ensure_preset("sdxl", "tiny")
    assert_refused(validate(scene_file(tmp_path, "sdxl", "[narrow.safetensors]")),
                   "narrow.safetensors", "width 32", "is 64")


def test_seventeen_loras_are_refused_naming_the_seventeenth(made, tmp_path):
    names = []
    for i in range(17):
        shutil.copy(made["sd15"], tmp_path / f"l{i}.safetensors")
        names.append(f"l{i}.safetensors")
    assert_refused(validate(scene_file(tmp_path, "sd15", "[" + ", ".join(names) + "]")),
                   "17 distinct LoRAs; at most 16", "l16.safetensors")


def test_a_lora_outside_the_scene_folder_is_refused_unless_allowed(made, tmp_path):
    inside = tmp_path / "scene"
    inside.mkdir()
    path = scene_file(inside, "sd15", f"[{made['sd15']}]")
    assert_refused(validate(path), "regions[0].loras[0].lora")
    assert CliRunner().invoke(app, ["validate", "--allow-outside", str(path)]).exit_code == 0
