"""Reaching a model: hints name the installed hub tool, hub look-ups stay quiet, refused pickles are named, a hub
that does not answer fails at once with the offline hint."""

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
    monkeypatch.setattr(hub, "_unreachable", lambda endpoint: None)  # online, and the hub answers
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


@pytest.fixture
def unreachable_hub(monkeypatch):
    """No HF_HUB_OFFLINE, and a hub endpoint where nothing listens."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    hub._unreachable.cache_clear()  # the probe's answer is kept per endpoint
    yield
    hub._unreachable.cache_clear()


def test_a_hub_that_cannot_be_reached_fails_at_once_with_the_offline_hint(unreachable_hub):
    """Without it: ~25 s of retries per file, then a message pointing to a stack trace nobody saw."""
    with pytest.raises(RenderError) as caught:
        load_adapter(Model("sd15", "nobody/not-cached", Accelerator("none")), torch.device("cpu"), torch.float32)
    message = str(caught.value)
    assert message.startswith("cannot load model 'nobody/not-cached': not in the Hugging Face cache")
    assert "the hub at http://127.0.0.1:9 cannot be reached" in message and "download nobody/not-cached" in message


def test_an_unreachable_hub_lora_or_clip_gets_the_same_hint(unreachable_hub):
    from semanticdraw_cli.families import loading
    from semanticdraw_cli.families.clip import load_clip

    with pytest.raises(RenderError, match="the hub at http://127.0.0.1:9 cannot be reached") as caught:
        loading.fuse_accelerator(object(), Accelerator("lora", "nobody/lora", None, 1.0), None, "sd15")
    assert "cannot load accelerator LoRA 'nobody/lora': not in the Hugging Face cache" in str(caught.value)
    with pytest.raises(RenderError, match="cannot load CLIP model 'nobody/clip'.*\n.*the hub at http://127.0.0.1:9 cannot be reached"):
        load_clip("nobody/clip", "cpu")


def test_the_render_command_exits_1_with_the_hint(unreachable_hub, tmp_path):
    from typer.testing import CliRunner

    from semanticdraw_cli.cli.app import app

    scene = tmp_path / "s.yaml"
    scene.write_text("canvas: {width: 64, height: 64}\nregions: [{prompt: a fox, mask: {rect: [0, 0, 32, 64]}}]\n")
    result = CliRunner().invoke(app, ["render", str(scene), "-o", str(tmp_path), "-q", "--device", "cpu",
                                      "--model", "nobody/not-cached"])
    assert result.exit_code == 1, result.output
    assert "cannot load model 'nobody/not-cached'" in result.output and "cannot be reached" in result.output
