"""Region LoRAs for tests: random-weight LoRAs of a family's tiny preset, made with PEFT and saved as
.safetensors, so that the real loading path (diffusers' LoRA readers, PEFT adapters) runs."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import diffusers
import torch

from semanticdraw_cli.families import presets
from semanticdraw_cli.families.registry import family as family_spec

TARGETS = {  # layers each family's test LoRA adapts: attention everywhere, FLUX.2's fused single-block projection too
    "klein": (*presets.ATTENTION_PROJECTIONS, "to_qkv_mlp_proj"),
}


def network_of(family: str):
    """The tiny preset's denoiser network, loaded alone, and the pipeline part it is."""
    folder = presets.ensure_preset(family, "tiny")
    component = "unet" if (folder / "unet").is_dir() else "transformer"
    config = json.loads((folder / component / "config.json").read_text())
    return getattr(diffusers, config["_class_name"]).from_pretrained(folder / component), component


def make_lora(family: str, path: Path, seed: int = 0, scale: float = 0.05, network=None) -> Path:
    """A random LoRA for `family`'s tiny preset at `path` (a .safetensors file)."""
    if network is None:
        network, component = network_of(family)
    else:
        component = "unet" if network.__class__.__name__ == "UNet2DConditionModel" else "transformer"
    pipeline_class = getattr(diffusers, family_spec(family).pipeline_class)
    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(seed)
        presets.save_random_lora(network, Path(folder), pipeline_class, component,
                                 TARGETS.get(family, presets.ATTENTION_PROJECTIONS), scale=scale)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(folder) / "pytorch_lora_weights.safetensors"), path)
    return path
