"""Region LoRAs on a loaded network: each distinct file loaded once as a PEFT adapter, switched per call.

A region's LoRA set is a network variant (`Conditioning.variant`): the batcher never mixes variants in a
call, and before each call `activate` puts the network in the call's variant: `set_adapters` with the
set's names and weights, or the adapters disabled (the base network, bit for bit) for regions without
LoRAs. Grouping was chosen over mixed-adapter batches by measurement (benchmarks/README.md, "Region
LoRAs"). The accelerator LoRA stays fused into the weights, so a variant adds to the accelerated model.
Only the denoiser's part of a LoRA is loaded: prompts are encoded by the base text encoders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from semanticdraw_cli.errors import RenderError

if TYPE_CHECKING:
    from semanticdraw_cli.families.base import FamilyAdapter
    from semanticdraw_cli.scene.types import RegionLora

Variant = tuple[tuple[str, float], ...]  # (adapter name, weight) sorted by name; None: the base network


@dataclass
class LoadedLoras:
    """What one adapter's network holds: the region adapters by name, and the variant it runs now."""

    names: set[str] = field(default_factory=set)
    active: Hashable = None


def adapter_name(lora: RegionLora) -> str:
    """A name that changes with the file's bytes, so an edited LoRA loads beside (then instead of) the old one."""
    identity = lora.sha256 or hashlib.sha256(f"{lora.lora}\0{lora.weight_name}".encode()).hexdigest()
    return "region_" + identity[:20]


def loaded(adapter: FamilyAdapter) -> LoadedLoras:
    state = getattr(adapter, "region_loras", None)
    if state is None:
        state = LoadedLoras()
        adapter.region_loras = state
    return state


def load(adapter: FamilyAdapter, lora: RegionLora, family: str) -> str:
    """Load the LoRA into the adapter's network once (its denoiser part); its adapter name."""
    import diffusers

    from semanticdraw_cli.families.registry import family as family_spec

    state, name = loaded(adapter), adapter_name(lora)
    if name in state.names:
        return name
    pipeline_class = getattr(diffusers, family_spec(family).pipeline_class)
    network = adapter.network
    prefix = "unet" if network.__class__.__name__ == "UNet2DConditionModel" else "transformer"
    kwargs = {"weight_name": lora.weight_name} if lora.weight_name else {}
    try:
        read = pipeline_class.lora_state_dict(lora.lora, **kwargs)
        weights, alphas = (read[0], read[1]) if isinstance(read, tuple) else (read, None)
        network.load_lora_adapter(weights, prefix=prefix, adapter_name=name,
                                  **({"network_alphas": alphas} if isinstance(alphas, dict) and alphas else {}))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise RenderError(
            f"the region LoRA {lora.lora!r} does not load into the {family} model: {str(error).splitlines()[0]}\n"
            f"what to do: use a LoRA trained for {family}"
        ) from error
    if name not in getattr(network, "peft_config", {}):
        raise RenderError(f"the region LoRA {lora.lora!r} holds no weights for the {family} model's {prefix}\n"
                          f"what to do: use a LoRA trained for {family}")
    state.names.add(name)
    state.active = ()  # loading activates the new adapter: the next call sets the variant it needs
    return name


def unload_others(adapter: FamilyAdapter, keep: set[str]) -> list[str]:
    """Delete the region adapters not in `keep` (a scene no longer names them): what was deleted."""
    state = getattr(adapter, "region_loras", None)
    if state is None:
        return []
    gone = sorted(state.names - keep)
    if gone:
        adapter.network.delete_adapters(gone)
        state.names -= set(gone)
        state.active = ()
    return gone


def activate(adapter: FamilyAdapter, variant: Hashable) -> None:
    """Put the network in `variant` (a `Variant`, or None: the base network) unless it is in it already."""
    state = getattr(adapter, "region_loras", None)
    if state is None or not state.names:
        if variant is not None:
            raise RenderError(f"the network variant {variant!r} names LoRAs that were never loaded")
        return
    if variant == state.active:
        return
    network = adapter.network
    if variant is None:
        network.disable_lora()
    else:
        network.enable_lora()
        network.set_adapters([name for name, _ in variant], [weight for _, weight in variant])
    state.active = variant
