"""Reaching a model: hints name the installed hub tool, hub look-ups stay quiet, refused pickles are named."""

import os
import shutil
import warnings

import pytest
import torch

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import hub, presets
from semanticdraw_cli.families.registry import load_adapter
from semanticdraw_cli.scene.types import Accelerator, Model


def with_tools(monkeypatch, *installed: str) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if name in installed else None)


@pytest.mark.parametrize("installed, download, login", [
    (("hf", "huggingface-cli"), "`hf download owner/model`", "`hf auth login`"),
    (("huggingface-cli",), "`huggingface-cli download owner/model`", "`huggingface-cli login`"),
])
def test_hints_name_the_hub_tool_that_is_installed(monkeypatch, installed, download, login):
    with_tools(monkeypatch, *installed)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert download in str(hub.missing_model_error("model", "owner/model", OSError("not cached")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert login in str(hub.missing_model_error("model", "owner/model", OSError("not found")))


def test_a_lora_hint_downloads_only_its_file(monkeypatch):
    with_tools(monkeypatch, "hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    error = hub.missing_model_error("accelerator LoRA", "ByteDance/SDXL-Lightning", OSError("x"), "lightning.safetensors")
    assert "`hf download ByteDance/SDXL-Lightning lightning.safetensors`" in str(error)


def test_a_local_path_is_never_offered_for_download(monkeypatch, tmp_path):
    with_tools(monkeypatch, "hf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = str(hub.missing_model_error("model", str(tmp_path), OSError("no model_index.json")))
    assert "download" not in message and f"check that {tmp_path} is a diffusers folder" in message


def test_hub_look_ups_do_not_print_the_local_dir_use_symlinks_deprecation():
    """diffusers passes that deprecated argument on every hub look-up; offline, the look-up fails at once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RenderError, match="cannot load model 'nobody/not-cached'"):
            load_adapter(Model("sd15", "nobody/not-cached", Accelerator("none")), torch.device("cpu"), torch.float32)
    assert not [w for w in caught if "local_dir_use_symlinks" in str(w.message)]


@pytest.mark.slow
@pytest.mark.parametrize("component, weights", [("unet", "diffusion_pytorch_model"), ("text_encoder", "pytorch_model")])
def test_a_pickle_weights_file_that_imports_code_is_refused_by_name(tmp_path, component, weights):
    """torch.load(weights_only=True) refuses it (good); the user learns which file and why, not a traceback."""
    from safetensors.torch import load_file

    from semanticdraw_cli.families import sd15

    folder = tmp_path / "model"
    shutil.copytree(presets.ensure_preset("sd15", "tiny"), folder)
    (safetensors,) = (folder / component).glob("*.safetensors")
    state = load_file(safetensors)
    safetensors.unlink()
    torch.save({**state, "payload": os.getcwd}, folder / component / f"{weights}.bin")
    with pytest.raises(RenderError) as refused:
        sd15.load_pipeline(Model("sd15", str(folder), Accelerator("none")), torch.float32)
    message = str(refused.value)
    assert f"refused to load {folder / component / weights}.bin" in message
    assert "getcwd" in message and "loads no pickle code" in message
