"""The two kinds of failure the CLI reports: bad input (exit 2) and runtime failure (exit 1)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scene: where it is, what was found, and how to fix it."""

    file: str
    key: str  # dotted key path, e.g. "regions[2].mask.polygon"; "" for the whole file
    message: str
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line is not None else "")
        text = f"{where}: {self.key + ': ' if self.key else ''}{self.message}"
        return text + (f" (hint: {self.hint})" if self.hint else "")


class SceneError(Exception):
    """Bad scene or arguments; carries every problem found, not just the first. Exit code 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RenderError(Exception):
    """Runtime failure with a message that says what to do (model missing, out of memory, NaN). Exit 1."""

    exit_code = 1


class MaskError(ValueError):
    """A mask source that cannot be rasterized (missing file, corrupt image, absent label colour)."""

    def __init__(self, message: str, hint: str | None = None):
        self.hint = hint
        super().__init__(message)
