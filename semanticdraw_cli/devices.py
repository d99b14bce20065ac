"""Which device and dtype a render runs on: the user's choice, else the best available."""

from __future__ import annotations

from typing import TYPE_CHECKING

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def device_problem(requested: str | None) -> str | None:
    """Why the `requested` device (cpu, mps, cuda, cuda:N; None/auto) cannot be used here; None when it can."""
    if requested is None or requested in ("auto", "cpu"):
        return None
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            return "CUDA is not available here; use --device cpu"
        index, count = int(requested.partition(":")[2] or 0), torch.cuda.device_count()
        if index >= count:
            return f"this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
    if requested == "mps" and not mps_available():
        return "MPS (Apple GPU) is not available here; use --device cpu"
    return None


def pick_device(requested: str | None) -> torch.device:
    """`auto`/None: cuda, then mps, then cpu."""
    if requested and requested != "auto":
        problem = device_problem(requested)
        if problem:
            raise RenderError(f"device {requested!r}: {problem}")
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(requested: str | None, device: torch.device, cuda_dtype: str = "float16") -> torch.dtype:
    """`auto`/None: the family's `cuda_dtype` on cuda (bfloat16 only where the card has it), float32 elsewhere."""
    if requested and requested != "auto":
        if requested not in defaults.DTYPES:
            raise RenderError(f"unknown dtype {requested!r}; expected one of {', '.join(defaults.DTYPES)} or auto")
        return getattr(torch, requested)
    if device.type != "cuda":
        return torch.float32
    if cuda_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return getattr(torch, cuda_dtype)


def planned_target(requested_device: str | None, requested_dtype: str | None, cuda_dtype: str = "float16") -> tuple[str, str]:
    """(device type, dtype name) a render will use, decided as `pick_device`/`pick_dtype` decide but without
    checking that the device is here (`check` may judge GPU renders on a CPU machine); torch is imported only
    when the choice is automatic and needs it."""
    if requested_device and requested_device != "auto":
        device_type = requested_device.partition(":")[0]
    else:
        device_type = pick_device(None).type
    if requested_dtype and requested_dtype != "auto":
        return device_type, requested_dtype
    if device_type != "cuda":
        return device_type, "float32"
    if cuda_dtype == "bfloat16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return device_type, "float16"
    return device_type, cuda_dtype
