"""The prepare stage of region LoRAs: each distinct LoRA loaded once per model, and each region's variant.

A region's variant is its LoRA set with weights, as adapter names (`families.region_loras`); regions
without LoRAs (and the background prompt, region 0 when there is one) run the base network. A LoRA at
weight 0 is left out, so it equals no LoRA exactly. The stage is cached by the file's hash: an edited
LoRA file loads again (and alone), and adapters no scene of the renderer names any more are deleted.
"""

from __future__ import annotations

from collections.abc import Hashable

from semanticdraw_cli.families import region_loras
from semanticdraw_cli.families.base import FamilyAdapter
from semanticdraw_cli.scene.types import Scene
from semanticdraw_cli.stages import StageCache


def region_variants(
    scene: Scene, adapter: FamilyAdapter, cache: StageCache, model_key: Hashable
) -> tuple[tuple[Hashable, ...], list[dict]]:
    """(The network variant per mask row, background first when there is one; the report's `loras`)."""
    variants: list[Hashable] = [None] if scene.background.prompt is not None else []
    names: set[str] = set()
    for region in scene.regions:
        chosen = []
        for lora in region.loras:
            key = (model_key, lora.lora, lora.weight_name, lora.sha256)
            name = cache.get("lora", key, lambda lora=lora: region_loras.load(adapter, lora, scene.model.family))
            region_loras.load(adapter, lora, scene.model.family)  # a no-op unless an older prepare deleted it
            names.add(name)
            if lora.weight != 0.0:
                chosen.append((name, lora.weight))
        variants.append(tuple(sorted(chosen)) or None)
    region_loras.unload_others(adapter, names)
    if all(variant is None for variant in variants):
        return (), report(scene)
    return tuple(variants), report(scene)


def report(scene: Scene) -> list[dict]:
    """Each region's LoRAs as the report records them: file or hub id, weight, file hash."""
    return [
        {"region": region.name, "lora": lora.lora, "weight": lora.weight, "weight_name": lora.weight_name,
         "sha256": lora.sha256}
        for region in scene.regions
        for lora in region.loras
    ]
