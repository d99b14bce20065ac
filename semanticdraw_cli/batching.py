"""How a step's items become network calls: batches of one window shape, `sampler.max_batch: auto` sizing,
padding to one static size for a compiled network, halving after running out of memory (architecture.md §4).

Pure helpers; `fusion` makes the calls. An item is (image, pair index in the step's plan).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from semanticdraw_cli import defaults

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.plan import Pair

Item = tuple[int, int]  # (image, pair index in the step's plan)


@dataclass
class Batching:
    """The batch size in use during one sampling run; running out of memory halves it for the rest of the run."""

    size: int
    pad: bool = False  # pad every call to `size` items, so that a compiled network sees one shape
    halvings: int = 0  # out-of-memory errors survived so far
    padded: int = 0  # padding items evaluated (and discarded) so far
    calls: int = 0  # network calls so far

    def halve(self, failed: int) -> None:
        """After a call of `failed` items ran out of memory: half of that, at least one."""
        self.size = max(1, min(self.size, failed) // 2)
        self.halvings += 1


def chunks(items: Sequence[Item], pairs: Sequence[Pair], size: int,
           variants: Sequence[Hashable] = (), extra_key: Callable[[Pair], Hashable] | None = None) -> Iterator[list[Item]]:
    """Items in batches of at most `size`. Only what forces separate calls splits a batch: another window shape,
    another network variant (`variants`, per region; empty: one network), or other extra networks (`extra_key`
    of a pair: the ControlNets it runs through). Prompts, guidance scales and whatever else differs per item
    travel as per-item tensors in one call."""
    by_call: dict[tuple, list[Item]] = {}
    for item in items:
        pair = pairs[item[1]]
        key = (pair.window.height, pair.window.width, variants[pair.region] if variants else None,
               extra_key(pair) if extra_key else None)
        by_call.setdefault(key, []).append(item)
    for group in by_call.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def padding(count: int, batching: Batching) -> int:
    """Items to add to a call of `count` items: up to the batch size when padding, else none."""
    return batching.size - count if batching.pad and count < batching.size else 0


def demand(plan: Sequence[Sequence[Pair]], images: int) -> int:
    """The most items of one window shape in any step: what one call per shape and step must hold."""
    most = 0
    for pairs in plan:
        counts = Counter((p.window.height, p.window.width) for p in pairs)
        most = max(most, max(counts.values(), default=0) * images)
    return max(most, 1)


def auto_max_batch(device: torch.device, need: int, item_bytes: Callable[[], int]) -> int:
    """`sampler.max_batch: auto`. On CUDA all `need` items in one call when a share of the free memory holds
    them at `item_bytes()` each (a probe); elsewhere `AUTO_BATCH_OFF_CUDA`, what the CPU benchmarks found best."""
    if device.type != "cuda":
        return min(defaults.AUTO_BATCH_OFF_CUDA, need)
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached by the allocator
    fits = int(free * defaults.AUTO_BATCH_MEMORY_SHARE) // max(item_bytes(), 1)
    return max(1, min(need, fits))


def peak_bytes_per_item(device: torch.device, call: Callable[[int], object], batch: int = 2) -> int:
    """Peak CUDA memory one call of `batch` items adds, per item (`call(batch)` makes the call)."""
    import torch

    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call(batch)
    torch.cuda.synchronize(device)
    return math.ceil((torch.cuda.max_memory_allocated(device) - base) / batch)
