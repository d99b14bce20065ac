"""Goldens: reference images that CI compares new renders with (`render --golden DIR`), region by region.

A golden of `out/NAME-SEED.png` is `DIR/NAME-SEED.png`. An image whose worst area (a region, the uncovered
background, the whole image) differs from its golden by more than the tolerance in mean absolute difference
(0-255), or that has no golden or one of another size, fails the gate: exit `GOLDEN_EXIT_CODE`, with every
failing image named; the new images stay written. `--update-golden` copies the new images over the goldens.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semanticdraw_cli import image_diff, stages
from semanticdraw_cli.errors import SceneError, printable
from semanticdraw_cli.outputs import atomic_path
from semanticdraw_cli.scene.types import Scene

GOLDEN_EXIT_CODE = 5  # an image differs from its golden beyond the tolerance; the images are still written


@dataclass(frozen=True)
class GoldenCheck:
    """One image against its golden: the areas' differences, or why they could not be compared."""

    image: Path
    golden: Path
    areas: tuple[image_diff.AreaDifference, ...] = ()
    problem: str | None = None  # no golden, another size, unreadable

    def failure(self, tolerance: float) -> str | None:
        if self.problem is not None:
            return self.problem
        worst = max((area for area in self.areas if area.mean_abs is not None), key=lambda area: area.mean_abs)
        if worst.mean_abs > tolerance:
            return f"{worst.name} differs by {worst.mean_abs:.3f} (mean absolute, 0-255), over the tolerance {tolerance:g}"
        return None


def scene_differences(a: np.ndarray, b: np.ndarray, scene: Scene | None) -> list[image_diff.AreaDifference]:
    """Per-region differences under the scene's render masks; the whole image alone without a scene."""
    if scene is None:
        return image_diff.differences(a, b)
    masks = stages.canvas_masks(scene, stages.StageCache())  # (R, H, W)
    names = tuple(region.name for region in scene.regions)
    return image_diff.differences(a, b, masks, names, background=True)


def check(image: Path, golden_dir: Path, scene: Scene) -> GoldenCheck:
    """Compare a written image with its golden in `golden_dir`."""
    from semanticdraw_cli.score import read_pixels

    golden = Path(golden_dir) / Path(image).name
    if not golden.exists():
        return GoldenCheck(image, golden, problem=f"no golden {golden} (make it with --update-golden)")
    try:
        new, old = read_pixels(image), read_pixels(golden)
    except SceneError as error:
        return GoldenCheck(image, golden, problem=f"cannot read {error.problems[0].file}: {error.problems[0].message}")
    if new.shape != old.shape:
        return GoldenCheck(image, golden, problem=f"the golden is {old.shape[1]}x{old.shape[0]}, the image "
                                                  f"{new.shape[1]}x{new.shape[0]}")
    return GoldenCheck(image, golden, tuple(scene_differences(new, old, scene)))


def update(image: Path, golden_dir: Path) -> Path:
    """Copy a written image over its golden (atomically); the golden's path."""
    golden = Path(golden_dir) / Path(image).name
    with atomic_path(golden) as temporary:
        shutil.copyfile(image, temporary)
    return golden


def gate_message(checks: Sequence[GoldenCheck], tolerance: float) -> str | None:
    """Every image that fails its golden, one line each; None when all pass."""
    failed = [(check, why) for check in checks if (why := check.failure(tolerance)) is not None]
    if not failed:
        return None
    lines = [f"{printable(check.image)}: {printable(why)}" for check, why in failed]
    return (f"goldens: {len(failed)} of {len(checks)} image(s) differ from their golden (exit {GOLDEN_EXIT_CODE}); "
            "the new images are written; accept them with --update-golden:\n  " + "\n  ".join(lines))
