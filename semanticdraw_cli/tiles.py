"""The tile grid over a large latent canvas: fixed-size windows, the last one clamped to the edge."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """A rectangle of the latent canvas, in latent pixels."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width


def starts(length: int, size: int, stride: int) -> list[int]:
    """Window offsets along one axis: every `stride`, plus one flush with the far edge."""
    if length <= size:
        return [0]
    offsets = list(range(0, length - size + 1, stride))
    if offsets[-1] != length - size:
        offsets.append(length - size)
    return offsets


def tile_grid(height: int, width: int, size: int, stride: int) -> tuple[Window, ...]:
    """Windows of `size` (clipped to the canvas) every `stride` latent pixels, row by row."""
    win_h, win_w = min(size, height), min(size, width)
    return tuple(
        Window(top, left, win_h, win_w)
        for top in starts(height, win_h, stride)
        for left in starts(width, win_w, stride)
    )


def centred_window(box: tuple[int, int, int, int], height: int, width: int, size: int) -> Window:
    """A window of `size` centred on box (top, left, bottom, right), shifted to stay on the canvas."""
    win_h, win_w = min(size, height), min(size, width)
    top, left, bottom, right = box
    centre_y, centre_x = (top + bottom) // 2, (left + right) // 2
    y = min(max(centre_y - win_h // 2, 0), height - win_h)
    x = min(max(centre_x - win_w // 2, 0), width - win_w)
    return Window(y, x, win_h, win_w)
