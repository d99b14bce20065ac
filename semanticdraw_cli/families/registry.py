"""Every model family, in one place: adding a family is one module exporting a `FamilySpec` and one
line in `FAMILY_MODULES`.

Reading the registry is cheap (family modules load torch only when a model loads), so the scene
schema checks families, accelerators and options here without loading any model.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families.base import AcceleratorDefaults, FamilySpec

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.families.base import FamilyAdapter
    from semanticdraw_cli.scene.types import Model

FAMILY_MODULES = (
    "semanticdraw_cli.families.sd15",
    "semanticdraw_cli.families.sd2",
    "semanticdraw_cli.families.sdxl",
    "semanticdraw_cli.families.sd3",
    "semanticdraw_cli.families.flux",
    "semanticdraw_cli.families.klein",
)


@cache
def families() -> dict[str, FamilySpec]:
    """Family name -> spec, in registration order."""
    specs = [importlib.import_module(module).SPEC for module in FAMILY_MODULES]
    return {spec.name: spec for spec in specs}


def family(name: str) -> FamilySpec:
    return families()[name]


def default_guidance(spec: FamilySpec) -> float:
    """sampler.guidance when the scene names none: the default accelerator's, else the family's own scheduler's."""
    if spec.accelerator in spec.accelerators:
        return spec.accelerators[spec.accelerator].guidance
    return defaults.SCHEDULERS[spec.own_scheduler].guidance


@cache
def accelerators() -> dict[str, AcceleratorDefaults]:
    """Accelerator name -> its defaults, over every family; names are unique across families."""
    out: dict[str, AcceleratorDefaults] = {}
    for spec in families().values():
        for name, accelerator in spec.accelerators.items():
            if name in out:
                raise ValueError(f"accelerator {name!r} is registered by {accelerator_family(name)} and {spec.name}")
            out[name] = accelerator
    return out


def accelerator_family(name: str) -> str | None:
    """The family a named accelerator belongs to; None for an unknown name."""
    return next((spec.name for spec in families().values() if name in spec.accelerators), None)


def families_of_pipeline(config: dict) -> tuple[str, ...]:
    """The families that could own a diffusers folder, from its model_index.json: those of its pipeline class
    (several families may share one, e.g. sd15 and sd2), else those whose components it holds, most specific
    first; () when none fits."""
    name = config.get("_class_name")
    by_class = tuple(spec.name for spec in families().values() if name == spec.pipeline_class)
    if by_class:
        return by_class
    fitting = [spec for spec in families().values() if all(part in config for part in spec.components)]
    return tuple(spec.name for spec in sorted(fitting, key=lambda spec: -len(spec.components)))


def load_adapter(model: Model, device: torch.device, dtype: torch.dtype) -> FamilyAdapter:
    """The adapter of `model.family`, loaded onto `device` in `dtype`."""
    from semanticdraw_cli.families.hub import quiet_loading

    if model.family not in families():
        raise RenderError(f"model family {model.family!r} is not supported (known: {', '.join(families())})")
    with quiet_loading():
        return family(model.family).load(model, device, dtype)
