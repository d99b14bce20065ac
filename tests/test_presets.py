"""Presets: the `full-random` ones are the real architectures (parameter counts of the published checkpoints,
counted on the meta device, which allocates nothing) and are built only on a GPU, never written to disk."""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import presets, registry
from semanticdraw_cli.scene.types import Accelerator, Model

# Parameters of each network of the published checkpoints (stabilityai/stable-diffusion-xl-base-1.0,
# stabilityai/stable-diffusion-3-medium-diffusers, black-forest-labs/FLUX.1-schnell): what `full-random` must
# build to time the real compute.
PUBLISHED = {
    "sdxl": {"unet": 2_567_463_684, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840, "vae": 83_653_863},
    "sd3": {"transformer": 2_028_328_000, "text_encoder": 123_650_304, "text_encoder_2": 694_659_840,
            "text_encoder_3": 4_762_310_656, "vae": 83_819_683},
    "flux": {"transformer": 11_891_178_560, "text_encoder": 123_060_480, "text_encoder_2": 4_762_310_656,
             "vae": 83_819_683},
}


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("family", sorted(PUBLISHED))
def test_full_random_is_the_real_architecture(family):
    spec = registry.family(family)
    parts = spec.build_on_device("full-random", torch.device("meta"), torch.bfloat16, frozenset())
    networks = {name: part for name, part in parts.items() if isinstance(part, torch.nn.Module)}
    assert {name: parameters(net) for name, net in networks.items()} == PUBLISHED[family]
    assert all(p.dtype == torch.bfloat16 and p.is_meta for net in networks.values() for p in net.parameters())
    assert torch.get_default_dtype() == torch.float32  # restored after building


def test_full_random_skips_what_the_loader_drops():
    parts = registry.family("sd3").build_on_device("full-random", torch.device("meta"), torch.float16,
                                                    frozenset({"text_encoder_3", "tokenizer_3"}))
    assert "text_encoder_3" not in parts and "tokenizer_3" not in parts


@pytest.mark.parametrize("family", sorted(PUBLISHED))
def test_full_random_without_a_gpu_is_refused_and_nothing_is_written(family):
    model = Model(family, "full-random", Accelerator("none"))
    with pytest.raises(RenderError, match="(?s)built straight on a CUDA GPU and never written.*--device cuda"):
        registry.load_adapter(model, torch.device("cpu"), torch.float32)
    with pytest.raises(RenderError, match="built on a GPU when it loads"):
        presets.ensure_preset(family, "full-random")
    assert not list(presets.cache_root().glob(f"presets/{family}-full-random*"))


@pytest.mark.parametrize("family, kwargs", [("sdxl", {}), ("sd3", {}), ("sd3", {"text_encoder_3": None, "tokenizer_3": None}),
                                            ("flux", {}), ("flux", {"text_encoder_2": None, "tokenizer_2": None})])
def test_full_random_components_make_the_family_pipeline(family, kwargs):
    import diffusers

    spec = registry.family(family)
    skip = frozenset(key for key, value in kwargs.items() if value is None)
    parts = spec.build_on_device("full-random", torch.device("meta"), torch.float16, skip)
    pipe = getattr(diffusers, spec.pipeline_class)(**parts, **kwargs)
    assert all(getattr(pipe, name) is part for name, part in parts.items())


def test_random_on_is_seeded_and_leaves_the_default_dtype_alone():
    def build():
        with presets.random_on(torch.device("cpu"), torch.bfloat16):
            return torch.nn.Linear(8, 4)

    first, second = build(), build()
    assert first.weight.dtype == torch.bfloat16 and torch.equal(first.weight, second.weight)
    assert torch.get_default_dtype() == torch.float32


def test_a_device_preset_renders_through_the_loader(monkeypatch):
    """The whole path of `--model full-random` (build on the device, no LoRA, the family's adapter), run on
    the CPU with FLUX's networks shrunk to toy widths."""
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    from semanticdraw_cli.families import flux
    from semanticdraw_cli.render import Renderer
    from semanticdraw_cli.scene.loader import scene_from_dict

    def small_t5():
        return T5EncoderModel(T5Config(vocab_size=200, d_model=flux.TINY_T5, d_kv=16, d_ff=64, num_layers=1,
                                       num_heads=2, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu"))

    def small_clip(vocab_size, projection=False):
        return CLIPTextModel(presets.clip_text_config(vocab_size, 768, 1, 2))

    monkeypatch.setattr(presets, "BUILD_DEVICES", ("cpu",))
    monkeypatch.setattr(presets, "t5_xxl", small_t5)
    monkeypatch.setattr(presets, "clip_l", small_clip)
    monkeypatch.setattr(presets, "FULL_VAE", {**presets.FULL_VAE, "block_out_channels": (8, 16, 16, 16),
                                              "layers_per_block": 1, "norm_num_groups": 4})
    monkeypatch.setattr(flux, "FULL_TRANSFORMER", {**flux.FULL_TRANSFORMER, "num_layers": 1, "num_single_layers": 1,
                                                   "attention_head_dim": 16, "num_attention_heads": 2,
                                                   "joint_attention_dim": flux.TINY_T5, "axes_dims_rope": (4, 6, 6)})
    scene = scene_from_dict({"canvas": {"width": 64, "height": 64},
                             "model": {"family": "flux", "checkpoint": "full-random", "text_tokens": 16},
                             "regions": [{"prompt": "a fox", "mask": {"rect": [0, 0, 32, 64]}}]}, None)
    result = Renderer(device="cpu", dtype="float32").render(scene)[0]
    assert result.image.shape == (64, 64, 3) and torch.isfinite(result.latent).all()
    assert not list(presets.cache_root().glob("presets/flux-full-random*"))


# --- the preset cache: whole entries only, one builder at a time ------------------------------------


def whole_build(folder: Path, builds: list[Path], weights: bool = True) -> None:
    """A pipeline folder in miniature: model_index.json naming a text encoder with its config and weights."""
    builds.append(folder)
    (folder / "text_encoder").mkdir()
    (folder / "text_encoder" / "config.json").write_text("{}")
    if weights:
        (folder / "text_encoder" / "model.safetensors").write_bytes(b"weights")
    (folder / "build.txt").write_text(str(len(builds)))
    (folder / "model_index.json").write_text(json.dumps({"text_encoder": ["transformers", "CLIPTextModel"]}))


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


@pytest.mark.parametrize("damage", ["mark", "text_encoder", "weights"])
def test_an_entry_without_its_mark_or_with_a_part_missing_is_built_again(tmp_path, damage):
    folder, builds = tmp_path / "sd15-tiny-v2", []
    presets.build_cached(folder, lambda staging: whole_build(staging, builds))
    assert presets.missing_parts(folder) == [] and json.loads((folder / presets.COMPLETE).read_text())["version"]
    if damage == "mark":  # as an older version, or a process killed while building in place, left it
        (folder / presets.COMPLETE).unlink()
    elif damage == "text_encoder":
        shutil.rmtree(folder / "text_encoder")
    else:
        (folder / "text_encoder" / "model.safetensors").unlink()
    assert presets.missing_parts(folder)
    assert presets.build_cached(folder, lambda staging: whole_build(staging, builds)) == folder
    assert len(builds) == 2 and (folder / "build.txt").read_text() == "2" and presets.missing_parts(folder) == []
    assert leftovers(tmp_path) == ["sd15-tiny-v2"]  # the damaged entry and the staging folder are gone


def test_a_build_that_leaves_a_part_out_is_not_published(tmp_path):
    folder = tmp_path / "sd15-tiny-v2"
    with pytest.raises(RenderError, match=r"building sd15-tiny-v2 left out text_encoder/ \(weights\)"):
        presets.build_cached(folder, lambda staging: whole_build(staging, [], weights=False))
    assert leftovers(tmp_path) == []


def test_builders_lined_up_on_an_empty_cache_build_once_and_all_get_the_whole_entry(tmp_path):
    folder, builds, lined_up = tmp_path / "sd15-tiny-v2", [], threading.Barrier(3)

    def builder() -> Path:
        lined_up.wait()
        return presets.build_cached(folder, lambda staging: whole_build(staging, builds))

    with ThreadPoolExecutor(3) as pool:
        done = [pool.submit(builder) for _ in range(3)]
        assert [future.result() for future in done] == [folder] * 3
    assert len(builds) == 1 and presets.missing_parts(folder) == [] and leftovers(tmp_path) == ["sd15-tiny-v2"]


@pytest.mark.slow
def test_a_preset_built_by_a_process_that_is_not_rank_0_is_whole(tmp_path, monkeypatch):
    """transformers writes weights on rank 0 only: rank 1 of a launch built a tiny preset without its text
    encoder's. Rank 1 of an initialized process group, as transformers asks for it (a real gloo group of
    two processes gives the same, at several times the cost); ~4 s: one real build."""
    from transformers import CLIPTextModel

    monkeypatch.setenv("SEMANTICDRAW_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda *args, **kwargs: 1)
    folder = presets.ensure_preset("sd15", "tiny")
    assert sorted(p.name for p in (folder / "text_encoder").iterdir()) == ["config.json", "model.safetensors"]
    assert presets.missing_parts(folder) == []
    monkeypatch.undo()
    CLIPTextModel.from_pretrained(folder / "text_encoder")  # loads: every weight is in the file
