"""Presets: the `full-random` ones are the real architectures (parameter counts of the published checkpoints,
counted on the meta device, which allocates nothing) and are built only on a GPU, never written to disk."""

from __future__ import annotations

import pytest
import torch

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import presets, registry
from semanticdraw_cli.scene import Accelerator, Model

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
