"""Model-family adapters. Each exposes `load(model, device, dtype)` returning a denoiser for `fusion`."""

from __future__ import annotations

import importlib
import os

FAMILY_MODULES = {
    "sd15": "semanticdraw_cli.families.sd15",
    "sdxl": "semanticdraw_cli.families.sdxl",
    "sd3": "semanticdraw_cli.families.sd3",
}


def load_denoiser(model, device, dtype):
    """The adapter of `model.family`, loaded onto `device` in `dtype`."""
    from semanticdraw_cli.errors import RenderError

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # before transformers is first imported

    if model.family not in FAMILY_MODULES:
        raise RenderError(f"model family {model.family!r} is not supported yet (known: {', '.join(FAMILY_MODULES)})")
    module = importlib.import_module(FAMILY_MODULES[model.family])
    from semanticdraw_cli.families import common, hub, presets

    with hub.quiet_hub_warnings():
        if not presets.is_preset(model.checkpoint) and not model.checkpoint.endswith((".safetensors", ".ckpt")):
            common.refuse_other_family(model.checkpoint, model.family)  # before any weight is read, for every family
        return module.load(model, device, dtype)
