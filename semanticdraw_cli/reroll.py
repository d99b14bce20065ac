"""Re-roll: sample only the named regions over an earlier image and keep every other pixel of it exactly.

The paint-over mechanism (`background.image`'s): the earlier image is the picture painted over, so the canvas starts
from its latent and uncovered area is filled from it; the other regions' (and the background prompt's)
per-step masks are emptied, so the plan holds no pair of theirs and no network call is spent on them; the
blend over the picture then gives back every pixel outside the re-rolled regions' blurred masks. Prompt
encodings stay those of the whole scene (a background prompt still lerps the regions' embeddings).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from semanticdraw_cli.scene.types import Scene


def painted_over(scene: Scene) -> Scene:
    """The scene whose background picture is the image being re-rolled (itself when it re-rolls nothing)."""
    if scene.reroll is None:
        return scene
    background = dataclasses.replace(scene.background, image=scene.reroll.image, image_array=None)
    return dataclasses.replace(scene, background=background)


def only_rerolled(scene: Scene, canvas_masks: np.ndarray, quantized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, H, W) canvas masks and (n, R', h, w) per-step masks (R' = R + 1 with a background prompt, row 0)
    with every row but the re-rolled regions' emptied."""
    keep = np.array([region.name in scene.reroll.regions for region in scene.regions])
    rows = np.concatenate([[False], keep]) if quantized.shape[1] == len(keep) + 1 else keep
    return canvas_masks * keep[:, None, None], quantized * rows[None, :, None, None]
