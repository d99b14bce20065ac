"""Model-family adapters. Each exposes `load(model, device, dtype)` returning a denoiser for `fusion`."""

from __future__ import annotations

import importlib

FAMILY_MODULES = {
    "sd15": "semanticdraw_cli.families.sd15",
    "sdxl": "semanticdraw_cli.families.sdxl",
}


def load_denoiser(model, device, dtype):
    """The adapter of `model.family`, loaded onto `device` in `dtype`."""
    from semanticdraw_cli.errors import RenderError

    if model.family not in FAMILY_MODULES:
        raise RenderError(f"model family {model.family!r} is not supported yet (known: {', '.join(FAMILY_MODULES)})")
    return importlib.import_module(FAMILY_MODULES[model.family]).load(model, device, dtype)
