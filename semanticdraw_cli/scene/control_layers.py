"""Control layers of a layered drawing: a layer named `control` (or `control: MODEL`) is the picture of one of
the settings' whole-canvas `control:` entries, not a region.

`control` gives the first entry without an `image`; `control: MODEL` the entry whose `model` is MODEL as
written. The entry's other fields (model, weight, start, end) come from the settings, as for any scene.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from semanticdraw_cli.errors import Problem

if TYPE_CHECKING:
    import numpy as np

    from semanticdraw_cli.scene.layered_files import Document, Layer
    from semanticdraw_cli.scene.types import Scene

CONTROL_NAME = "control"


@dataclasses.dataclass(frozen=True)
class FromLayer:
    """An entry's `image` given by a drawing's layer: a value no YAML text can hold, so only a drawing sets it."""

    where: str  # the layer's group path, for messages


def split(document: Document, split_name: Callable[[str], tuple[str, str]]) -> tuple[Document, list[Layer]]:
    """The drawing without its control layers, and those layers (bottom first)."""
    controls = [layer for layer in document.layers if split_name(layer.name)[0].lower() == CONTROL_NAME]
    rest = tuple(layer for layer in document.layers if layer not in controls)
    return dataclasses.replace(document, layers=rest), controls


def mark(data: dict, layers: list[Layer], split_name: Callable[[str], tuple[str, str]], file: str
         ) -> tuple[dict[int, Layer], list[Problem]]:
    """Point each control layer's entry at it (`FromLayer`); entry index -> its layer, and what cannot be matched."""
    entries = list(data["control"]) if isinstance(data.get("control"), list) else []  # the settings stay unchanged
    data["control"] = entries if entries else data.get("control")
    picked: dict[int, Layer] = {}
    problems = []
    for layer in layers:
        named, model = split_name(layer.name)
        wanted = model if ":" in layer.name else None
        index = next((i for i, e in enumerate(entries) if isinstance(e, dict) and i not in picked
                      and (e.get("model") == wanted if wanted else "image" not in e)), None)
        if index is None:
            what = f"no control entry with model {wanted!r}" if wanted else "no control entry without an image"
            problems.append(Problem(file, "control", f"layer {layer.where!r} is a control picture, but the settings "
                                    f"have {what}", hint="control: [{model: id-or-path, weight: 1.0}] in the settings"))
            continue
        picked[index] = layer
        entries[index] = {**entries[index], "image": FromLayer(layer.where)}
    return picked, problems


def attach(scene: Scene, picked: dict[int, Layer], pixels: Callable[[Layer], np.ndarray]) -> Scene:
    """The scene with each picked entry's picture: `pixels(layer)`, (H, W, 3) uint8 at canvas size."""
    if not picked:
        return scene
    entries = list(scene.control)
    for index, layer in picked.items():
        entries[index] = dataclasses.replace(entries[index], image=None, image_array=pixels(layer))
    return dataclasses.replace(scene, control=tuple(entries))
