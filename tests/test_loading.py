"""Loading checkpoints: a folder's family comes from its model_index.json, refused cleanly when malformed; an
accelerator LoRA from the hub read from the cache offline, or refused saying it is not cached."""

import pytest

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import loading
from semanticdraw_cli.scene.types import Accelerator


def test_a_list_as_pipeline_class_name_is_a_clean_refusal(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": ["StableDiffusionPipeline"], "unet": ["diffusers", "UNet2DConditionModel"]}')
    with pytest.raises(RenderError, match=r"model_index.json has _class_name \['StableDiffusionPipeline'\]"):
        loading.refuse_other_family(str(tmp_path), "sd15")


class ReadsTheLora:
    """A pipeline that reads a LoRA as diffusers' loader does, and keeps its keys instead of fitting them."""

    def __init__(self):
        self.keys: list[str] = []

    def load_lora_weights(self, source, adapter_name, **kwargs):
        from diffusers.loaders import StableDiffusionLoraLoaderMixin

        state, _ = StableDiffusionLoraLoaderMixin.lora_state_dict(source, **kwargs)
        self.keys = sorted(state)
        raise ValueError("stop here: fitting the LoRA needs a model")


def test_an_uncached_hub_lora_offline_says_it_is_not_in_the_cache(monkeypatch):
    """diffusers says "you must specify a `weight_name`", which read as a LoRA that does not fit."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RenderError) as caught:
        loading.fuse_accelerator(ReadsTheLora(), Accelerator("lora", "nobody/not-cached-lora", None, 1.0), None, "sd15")
    message = str(caught.value)
    assert "'nobody/not-cached-lora'" in message and "not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE is set" in message and "download nobody/not-cached-lora" in message
    assert "does not fit" not in message


def test_a_cached_hub_lora_without_weight_name_loads_offline(monkeypatch, tmp_path):
    import torch
    from huggingface_hub import constants
    from safetensors.torch import save_file

    snapshot = tmp_path / "models--someone--fast-lora" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--someone--fast-lora" / "refs").mkdir()
    (tmp_path / "models--someone--fast-lora" / "refs" / "main").write_text("abc123")
    key = "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"
    save_file({key: torch.zeros(2, 4)}, snapshot / "pytorch_lora_weights.safetensors")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = ReadsTheLora()
    with pytest.raises(RenderError, match="does not fit"):  # ReadsTheLora stops after reading
        loading.fuse_accelerator(pipe, Accelerator("lora", "someone/fast-lora", None, 1.0), None, "sd15")
    assert pipe.keys == [key]
