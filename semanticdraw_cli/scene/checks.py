"""Typed reads of raw scene values: each bad value becomes one Problem (key, line, received, expected).

Numbers are bounded before any float math can overflow: integers too large for a float, values past
`defaults.MAX_NUMBER` unless a field sets its own range, and text that cannot be encoded as UTF-8 are
all reported here, so no later stage meets them.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from semanticdraw_cli import defaults as D
from semanticdraw_cli.errors import Problem

if TYPE_CHECKING:
    from semanticdraw_cli.scene.types import Canvas


class Checker:
    """Reads typed values out of raw dicts, recording a Problem (with the key's line) for each bad one."""

    def __init__(self, file: str, lines: dict[str, int], overridden: Sequence[str], allow_outside: bool = False):
        self.file, self.lines, self.overridden = file, lines, tuple(overridden)
        self.allow_outside = allow_outside  # paths of pictures and drawings may leave the scene's folder
        self.problems: list[Problem] = []

    def add(self, key: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.file, key, message, self._line(key), hint))

    def _line(self, key: str) -> int | None:
        if any(key == o or key.startswith((o + ".", o + "[")) for o in self.overridden):
            return None  # the value came from --set, not from the file
        while key:
            if self.lines.get(key) is not None:
                return self.lines[key]
            key = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", key) if re.search(r"[.\[]", key) else ""
        return None

    def section(self, value: object, key: str, allowed: Sequence[str]) -> dict:
        """A mapping (absent: empty); unknown keys get a did-you-mean hint."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(key, f"expected a mapping, got {describe(value)}")
            return {}
        known = set(allowed)
        for name in value:
            if name not in known:
                self.add(f"{key}.{name}" if key else str(name), f"unknown key {name!r}", self._key_hint(name, allowed))
        return value

    def _key_hint(self, name: object, allowed: Sequence[str]) -> str | None:
        """Did you mean ...? Worked out only for the problems that are printed (difflib is slow: ~0.1 ms a key)."""
        if len(self.problems) >= D.MAX_PROBLEMS_LISTED:
            return None
        close = difflib.get_close_matches(str(name), allowed, n=1)
        return f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(allowed)

    def integer(self, d: dict, name: str, key: str, default, lo: int | None = None, hi: int | None = None):
        """A whole number in [lo, hi]; a missing bound is ±MAX_NUMBER."""
        value = d.get(name)
        if value is None:
            return default
        if not is_int(value):
            self.add(key, f"expected a whole number, got {describe(value)}")
            return default
        return value if self._in_range(key, value, lo, hi) else default

    def number(self, d: dict, name: str, key: str, default, lo=None, hi=None, above: float | None = None):
        """A finite number in [lo, hi] (or above `above`); a missing bound is ±MAX_NUMBER."""
        value = d.get(name)
        if value is None:
            return default
        if not is_number(value):
            self.add(key, f"expected a number, got {describe(value)}")
            return default
        if above is not None and value <= above:
            self.add(key, f"must be greater than {above}, got {show(value)}")
            return default
        return float(value) if self._in_range(key, value, lo, hi) else default

    def _in_range(self, key: str, value, lo, hi) -> bool:
        low = lo if lo is not None else -D.MAX_NUMBER
        high = hi if hi is not None else D.MAX_NUMBER
        if low <= value <= high:
            return True
        if hi is None and value > high:
            self.add(key, f"{show(value)} is over the limit of {show(high)}", hint="use a smaller number")
        elif lo is None and value < low:
            self.add(key, f"{show(value)} is below the limit of {show(low)}", hint="use a smaller magnitude")
        else:
            span = f"between {lo} and {hi}" if lo is not None and hi is not None else (
                f"at least {lo}" if lo is not None else f"at most {hi}")
            self.add(key, f"must be {span}, got {show(value)}")
        return False

    def text(self, d: dict, name: str, key: str, default):
        value = d.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            self.add(key, f"expected text, got {describe(value)}", hint="put it in quotes")
            return default
        if bad := re.search("[\ud800-\udfff]", value):
            self.add(key, f"text that cannot be encoded as UTF-8 (a lone surrogate \\u{ord(bad[0]):04x} "
                          f"at character {bad.start()})", hint="remove the \\u escape")
            return default
        return value

    def flag(self, d: dict, name: str, key: str, default: bool) -> bool:
        value = d.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(key, f"expected true or false, got {describe(value)}")
            return default
        return value

    def choice(self, d: dict, name: str, key: str, choices: Sequence[str], default: str) -> str:
        value = d.get(name)
        if value is None:
            return default
        if value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = (f"did you mean {close[0]!r}? " if close else "") + "choose one of " + ", ".join(choices)
            self.add(key, f"unknown value {value!r}", hint)
            return default
        return value


# --- small helpers -----------------------------------------------------------------------------


def is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite int or float; an integer too large for a float is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def show(value: object) -> str:
    """A number for messages; a huge integer by its size (str() refuses over 4,300 digits)."""
    if not is_int(value) or int(value).bit_length() <= 64:
        return str(value)
    try:
        return f"a number of {len(str(abs(int(value)))):,} digits"
    except ValueError:
        return f"a number of about {int(int(value).bit_length() * math.log10(2)):,} digits"


def nearest(value: int, m: int = D.CANVAS_MULTIPLE) -> str:
    low = value - value % m
    return f"{value} -> {low} or {low + m}" if low > 0 else f"{value} -> {low + m}"


def describe(value: object) -> str:
    kinds = {bool: "true/false", int: "number", float: "number", str: "text", list: "list", dict: "mapping"}
    if is_int(value) and int(value).bit_length() > 64:
        return f"{show(value)} (number)"
    text = _repr(value) if not isinstance(value, bool) else str(value).lower()
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({kinds.get(type(value), type(value).__name__)})" if value is not None else "nothing"


def _repr(value: object) -> str:
    """repr() of a value of any size or depth, never failing (a list may hold a huge integer)."""
    try:
        return repr(value)
    except (ValueError, RecursionError):
        return f"<{type(value).__name__}>"


def mask_memory(width: int, height: int, regions: int, steps: int, latent_factor: int = D.CANVAS_MULTIPLE) -> int:
    """Bytes the masks of a render take at prepare's peak: float32 canvas copies of every region, then the
    per-step latent masks (the background prompt as one more region), once in numpy and once on the device."""
    canvas = D.MASK_CANVAS_COPIES * regions * width * height * 4
    latent = 2 * steps * (regions + 1) * (width // latent_factor) * (height // latent_factor) * 4
    return int(canvas + latent)


def gib(size: int) -> str:
    return f"{size / 1024**3:,.1f} GiB"


def check_mask_memory(c: Checker, canvas: Canvas, regions: int, steps: int) -> None:
    """Refuse a scene whose masks alone would exhaust memory (canvas × regions × steps), naming the numbers."""
    need = mask_memory(canvas.width, canvas.height, regions, steps)
    if need > D.MAX_MASK_BYTES:
        c.add("regions", f"{regions} regions on a {canvas.width}x{canvas.height} canvas with {steps} steps need about "
              f"{gib(need)} for their masks, over the limit of {gib(D.MAX_MASK_BYTES)}",
              hint="use fewer regions or a smaller canvas")
