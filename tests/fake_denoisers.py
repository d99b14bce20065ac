"""Stand-in networks for sampler tests: x0 as a function of each item's input, region row and step."""

from __future__ import annotations

import torch


class Recording:
    """x0 = a region-dependent function of the input (`x0`); remembers each call's batch size; runs out of
    memory above `fits` items, as a call on a full GPU would."""

    def __init__(self, fits: int | None = None):
        self.fits, self.calls = fits, []

    def predict_x0(self, x, table, step, items):
        if self.fits is not None and len(x) > self.fits:
            raise torch.cuda.OutOfMemoryError(f"a batch of {len(x)} does not fit")
        self.calls.append(len(x))
        return self.x0(x, items, step)

    def x0(self, x, items, step):
        return 0.5 * x + items.cond["id"][:, :, None, None]
