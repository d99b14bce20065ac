"""The two kinds of failure the CLI reports: bad input (exit 2) and runtime failure (exit 1)."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from semanticdraw_cli.defaults import MAX_PROBLEMS_LISTED

SAFE_CONTROLS = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"}


def printable(text: object) -> str:
    """`text` safe to print on a terminal: control characters (ANSI escapes, newlines, carriage returns) and
    invisible format characters (bidirectional overrides, line separators) shown escaped, e.g. `\\x1b[31m`,
    so that text from a scene, a drawing or a file name can neither restyle the terminal nor start a line."""
    text = str(text)
    if text.isprintable():  # the common case, without a pass per character
        return text
    return "".join(_escaped(char) for char in text)


def printable_lines(text: object) -> str:
    """`printable` for text of several lines (a message, a YAML document): its newlines stay line breaks."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def _escaped(char: str) -> str:
    if char.isprintable() or char == " " or unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp", "Co", "Cn", "Cs"):
        return char
    if char in SAFE_CONTROLS:
        return SAFE_CONTROLS[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scene: where it is, what was found, and how to fix it."""

    file: str
    key: str  # dotted key path, e.g. "regions[2].mask.polygon"; "" for the whole file
    message: str
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = printable(self.file) + (f":{self.line}" if self.line is not None else "")
        text = f"{where}: {printable(self.key) + ': ' if self.key else ''}{printable(self.message)}"
        return text + (f" (hint: {printable(self.hint)})" if self.hint else "")


def problem_lines(problems: Sequence[Problem], limit: int = MAX_PROBLEMS_LISTED) -> list[str]:
    """The problems as printed: the first `limit` of each file, in order, then a line per file counting the rest
    (a file of 100,000 unknown keys prints 51 lines, not 100,000)."""
    listed, hidden, lines = Counter(), Counter(), []
    for problem in problems:
        if listed[problem.file] < limit:
            listed[problem.file] += 1
            lines.append(str(problem))
        else:
            hidden[problem.file] += 1
    return lines + [f"{printable(file)}: \u2026 and {count:,} more problem{'s' * (count > 1)}" for file, count in hidden.items()]


class SceneError(Exception):
    """Bad scene or arguments; carries every problem found, not just the first. Exit code 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(problem_lines(self.problems)))


class RenderError(Exception):
    """Runtime failure with a message that says what to do (model missing, out of memory, NaN). Exit 1."""

    exit_code = 1


class MaskError(ValueError):
    """A mask source that cannot be rasterized (missing file, corrupt image, absent label colour)."""

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message)
