"""Heavy libraries imported on first use, so `--help`, `validate` and `preview` never load torch.

Family modules are imported to read their specs (facts the scene schema checks) long before any
model loads; they name `torch` through `lazy_module("torch")`, which imports it on the first
attribute read. Nothing at module level of such a module may read an attribute of it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


class LazyModule(ModuleType):
    """A stand-in for a module that imports the real one on first attribute access."""

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self.__name__), attribute)


def lazy_module(name: str) -> Any:
    return LazyModule(name)


def inference_mode(function: Callable) -> Callable:
    """`torch.inference_mode()` as a decorator that imports torch only when the function runs."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        import torch

        with torch.inference_mode():
            return function(*args, **kwargs)

    return run
