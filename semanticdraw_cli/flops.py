"""FLOPs of the denoise phase and the device's peak rate: the report's achieved TFLOP/s (architecture.md §4).

FLOPs are counted with `torch.utils.flop_counter` on one item per window shape (the count is linear in the
batch), so the denoise phase's count is a sum over the plan's pairs. The peak is what a large matrix product
reaches on the device, measured once per process, unless it is given (`--peak-tflops`).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from semanticdraw_cli import defaults
from semanticdraw_cli.lazy import lazy_module

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.plan import Pair
else:
    torch = lazy_module("torch")


def count(call: Callable[[], object]) -> int:
    """FLOPs of the matrix products, convolutions and attention that `call()` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_attention_formulas()) as counter:
        call()
    return int(counter.get_total_flops())


def _attention_formulas() -> dict[Any, Callable]:
    """Fused attention of the CPU and MPS, which torch's FLOP table leaves out: counted as on CUDA."""
    from torch.utils.flop_counter import sdpa_flop_count

    def attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    names = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_attention_math_for_mps")
    return {getattr(torch.ops.aten, name): attention for name in names if hasattr(torch.ops.aten, name)}


@functools.cache
def measured_peak(device: str, dtype: str) -> float:
    """TFLOP/s of a square matrix product on the device in `dtype` (random data, median after a warm-up)."""
    where = torch.device(device)
    side = defaults.PEAK_MATMUL_SIDE_CUDA if where.type == "cuda" else defaults.PEAK_MATMUL_SIDE
    generator = torch.Generator(where).manual_seed(0)
    a, b = (torch.randn(side, side, generator=generator, device=where).to(getattr(torch, dtype)) for _ in range(2))
    seconds = []
    for _ in range(defaults.PEAK_MATMUL_WARMUP + defaults.PEAK_MATMUL_REPEATS):
        _synchronize(where)
        start = time.perf_counter()
        torch.matmul(a, b)
        _synchronize(where)
        seconds.append(time.perf_counter() - start)
    return 2 * side**3 / statistics.median(seconds[defaults.PEAK_MATMUL_WARMUP :]) / 1e12


def peak(device: torch.device, dtype: torch.dtype, given: float | None) -> tuple[float, str]:
    """(peak TFLOP/s, where it came from)."""
    if given is not None:
        return given, "given"
    name = str(dtype).removeprefix("torch.")
    side = defaults.PEAK_MATMUL_SIDE_CUDA if device.type == "cuda" else defaults.PEAK_MATMUL_SIDE
    return measured_peak(str(device), name), f"measured: {side}x{side}x{side} {name} matrix product"


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summary(
    plans: Sequence[Sequence[Pair]], images: int, item_flops: dict[tuple[int, int], int], seconds: float,
    peak_tflops: float, peak_source: str,
) -> dict[str, Any]:
    """The report's `flops`: the useful work of the steps run (padding excluded), its rate and share of the peak."""
    total = images * sum(item_flops[p.window.height, p.window.width] for pairs in plans for p in pairs)
    achieved = total / seconds / 1e12 if seconds > 0 else None
    return {
        "denoise": total,
        "per_item": {f"{h}x{w}": flops for (h, w), flops in item_flops.items()},
        "tflops_per_second": achieved,
        "peak_tflops_per_second": peak_tflops,
        "peak": peak_source,
        "fraction_of_peak": achieved / peak_tflops if achieved is not None and peak_tflops > 0 else None,
    }
