"""Re-roll in `watch`: the terminal's `r NAME` and the loop's `reroll(names)`, with render --reroll's semantics.

The latest image is copied to NAME-reroll-base.png (the loop replaces NAME-latest.png, which a render may
not read and write at once), and the next cycle renders the scene with a `reroll` section over that copy
and a new seed for each named region: one more than its last re-roll's, else than its own or the image's.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from semanticdraw_cli.scene.types import Scene

BASE_SUFFIX = "-reroll-base.png"


@dataclass
class RerollRequests:
    """The regions asked for (until the next cycle takes them) and the seeds re-rolls gave so far."""

    pending: tuple[str, ...] = ()
    seeds: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # asked from any thread, taken by the loop

    def ask(self, names: Sequence[str]) -> None:
        with self.lock:
            self.pending = tuple(names)

    def base(self, out_dir: Path, name: str) -> Path:
        return out_dir / f"{name}{BASE_SUFFIX}"

    def copy_latest(self, latest: Path, out_dir: Path, name: str) -> bool:
        """Copy the latest image to the base before the cycle reads its files; False when there is none yet."""
        if not latest.is_file():
            return False
        shutil.copyfile(latest, self.base(out_dir, name))
        return True

    def take(self) -> tuple[str, ...]:
        """The regions asked for so far, once: a request that comes later waits for the next cycle."""
        with self.lock:
            names, self.pending = self.pending, ()
        return names

    def overrides(self, scene: Scene, out_dir: Path, names: tuple[str, ...]) -> tuple[list[str], str | None]:
        """(the overrides of a re-roll of `names`, a problem naming an unknown region or None)."""
        known = [region.name for region in scene.regions]
        unknown = [name for name in names if name not in known]
        if unknown:
            return [], f"r {' '.join(names)}: no region is named {unknown[0]!r}; the regions: {', '.join(known)}"
        extra = ["reroll=" + json.dumps({"from": str(self.base(out_dir, scene.name).resolve()), "regions": list(names)})]
        for name in names:
            own = scene.regions[known.index(name)].seed
            self.seeds[name] = self.seeds.get(name, own if own is not None else scene.sampler.seed) + 1
            extra.append(f"regions[{known.index(name)}].seed={self.seeds[name]}")
        return extra, None


def read_keys(lines: Sequence[str] | object, reroll, say) -> None:
    """The terminal's lines: `r NAME[,NAME...]` re-rolls those regions; anything else prints the keys."""
    for line in lines:
        words = line.replace(",", " ").split()
        if len(words) >= 2 and words[0] == "r":
            reroll(words[1:])
        elif words:
            say("keys: r NAME[,NAME...] re-rolls regions of the latest image, keeping the rest; Ctrl-C stops")
