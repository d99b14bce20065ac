"""Prompt adherence, the paper's CLIP_fg / CLIP_bg: each region's masked crop scored against its prompt.

What is scored (pure numpy, testable without a model):
- a region's pixels are those where its render mask (`render.region_masks`: rasterized, z-ordered,
  blurred, strength-scaled) is at or above `SCORE_MASK_THRESHOLD` (0.5) and stronger than every other
  region's (a tie goes to the later region). Where a later region lies on top, an earlier mask keeps
  only `cover_alpha` (0.3 by default) of its value, so hidden parts drop out and no pixel counts twice;
- the background's pixels are those no region covers: the region masks sum to less than 0.5 (render's
  background weight 1 - sum is above 0.5). They are scored against `background.prompt`; without a
  background prompt the background is not scored (null);
- the crop is the bounding box of those pixels. Inside it every pixel outside the area is set to the
  CLIP checkpoint's image mean colour (zero after CLIP's normalisation: it carries no signal), and the
  crop is padded with that colour to a centred square, so CLIP's resize and centre crop keep all of it;
- score = max(100 × cosine(image embedding, text embedding), 0): the CLIP score of the paper (and of
  torchmetrics' CLIPScore). CLIP_fg is the mean over the scored regions, CLIP_bg the background's.
An area without a single pixel is not scored (null) and never fails the gate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semanticdraw_cli import defaults as D
from semanticdraw_cli.errors import Problem, SceneError, printable
from semanticdraw_cli.scene.types import Scene

GATE_EXIT_CODE = 3  # some area scored below its threshold; the images are still written
NEUTRAL_FILL = tuple(int(round(255 * v)) for v in D.CLIP_IMAGE_MEAN)  # (123, 117, 104)
Similarity = Callable[[Sequence[np.ndarray], Sequence[str]], np.ndarray]  # (images, texts) -> (N,) cosines

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels, end exclusive


# --- geometry ---------------------------------------------------------------------------------


def area_masks(masks: np.ndarray, threshold: float = D.SCORE_MASK_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """Render masks (R, H, W) in [0, 1] -> (each region's pixels (R, H, W), the uncovered pixels (H, W)), bool.

    A pixel belongs to the region whose mask is strongest there (the later one on a tie) when that mask
    is at least `threshold`, so no pixel counts for two regions; it is uncovered when the masks sum to
    less than `threshold`. Pixels in neither set (soft edges) are scored for nothing.
    """
    regions = len(masks)
    owner = regions - 1 - np.argmax(masks[::-1], axis=0)  # (H, W); reversed: ties go to the later region
    inside = (np.arange(regions)[:, None, None] == owner) & (masks.max(axis=0) >= threshold)
    return inside, masks.sum(axis=0) < threshold


def bounding_box(mask: np.ndarray) -> Box | None:
    """The smallest box holding every True pixel of (H, W); None when there is none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def pad_square(crop: np.ndarray, fill: Sequence[int]) -> np.ndarray:
    """(h, w, 3) -> (s, s, 3), s = max(h, w), the crop centred on `fill`."""
    h, w = crop.shape[:2]
    side = max(h, w)
    out = np.empty((side, side, 3), np.uint8)
    out[...] = np.asarray(fill, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = crop
    return out


def masked_crop(image: np.ndarray, mask: np.ndarray, fill: Sequence[int] = NEUTRAL_FILL) -> np.ndarray | None:
    """The area's bounding box of (H, W, 3) uint8, pixels outside the area set to `fill`, padded square."""
    box = bounding_box(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    crop = np.where(mask[y0:y1, x0:x1, None], image[y0:y1, x0:x1], np.asarray(fill, np.uint8))
    return pad_square(crop.astype(np.uint8), fill)


def clip_score(cosine: float) -> float:
    """The paper's CLIP score: 100 × cosine, clipped at 0."""
    return max(D.MAX_CLIP_SCORE * float(cosine), 0.0)


# --- scores -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AreaScore:
    name: str  # the region's name, or "background"
    prompt: str
    pixels: int  # pixels scored
    box: Box | None  # None: no pixel, not scored
    cosine: float | None
    score: float | None  # max(100 × cosine, 0); None: not scored
    min_score: float | None  # the gate's threshold; None: not gated

    @property
    def below(self) -> bool:
        return self.score is not None and self.min_score is not None and _round(self.score) < self.min_score

    def to_dict(self) -> dict:
        return {
            "name": self.name, "prompt": self.prompt, "score": _round(self.score), "cosine": _round(self.cosine),
            "min_score": self.min_score, "passed": not self.below, "pixels": self.pixels,
            "box": list(self.box) if self.box else None,
        }


@dataclass(frozen=True)
class ImageScores:
    clip: str  # the CLIP checkpoint
    regions: tuple[AreaScore, ...]
    background: AreaScore | None  # None: the scene has no background prompt
    seconds: float = 0.0

    @property
    def clip_fg(self) -> float | None:
        scored = [a.score for a in self.regions if a.score is not None]
        return sum(scored) / len(scored) if scored else None

    @property
    def clip_bg(self) -> float | None:
        return self.background.score if self.background is not None else None

    @property
    def failures(self) -> list[AreaScore]:
        return [a for a in (*self.regions, self.background) if a is not None and a.below]

    def to_dict(self) -> dict:
        return {
            "clip": self.clip, "mask_threshold": D.SCORE_MASK_THRESHOLD, "clip_fg": _round(self.clip_fg),
            "clip_bg": _round(self.clip_bg), "passed": not self.failures,
            "regions": [a.to_dict() for a in self.regions],
            "background": self.background.to_dict() if self.background is not None else None,
            "seconds": self.seconds,
        }


def thresholds(scene: Scene) -> list[float | None]:
    """Each region's gate: its own min_score, else quality.min_region_score."""
    return [r.min_score if r.min_score is not None else scene.quality.min_region_score for r in scene.regions]


def has_gate(scene: Scene) -> bool:
    return scene.quality.min_background_score is not None or any(t is not None for t in thresholds(scene))


def score_image(
    image: np.ndarray, scene: Scene, similarity: Similarity, *, fill: Sequence[int] = NEUTRAL_FILL, clip: str = ""
) -> ImageScores:
    """CLIP score of every region (and the background, with a prompt) of a (H, W, 3) uint8 render of `scene`."""
    from semanticdraw_cli.render import region_masks

    start = time.perf_counter()
    if image.shape != (scene.canvas.height, scene.canvas.width, 3):
        raise ValueError(f"image is {image.shape}, the canvas {scene.canvas.width}x{scene.canvas.height}")
    inside, uncovered = area_masks(region_masks(scene))  # (R, H, W), (H, W)
    areas = [(r.name, r.prompt, inside[i], t) for i, (r, t) in enumerate(zip(scene.regions, thresholds(scene)))]
    if scene.background.prompt is not None:
        areas.append(("background", scene.background.prompt, uncovered, scene.quality.min_background_score))
    crops = [masked_crop(image, mask, fill) for _, _, mask, _ in areas]
    todo = [k for k, crop in enumerate(crops) if crop is not None]
    cosines = dict(zip(todo, similarity([crops[k] for k in todo], [areas[k][1] for k in todo]))) if todo else {}
    scored = [
        AreaScore(name, prompt, int(mask.sum()), bounding_box(mask), _float(cosines.get(k)),
                  None if k not in cosines else clip_score(cosines[k]), threshold)
        for k, (name, prompt, mask, threshold) in enumerate(areas)
    ]
    background = scored.pop() if scene.background.prompt is not None else None
    return ImageScores(clip, tuple(scored), background, time.perf_counter() - start)


def score_with(clip, image: np.ndarray, scene: Scene) -> ImageScores:
    """`score_image` with a loaded `families.clip.ClipSimilarity` (its fill colour and name)."""
    return score_image(image, scene, clip, fill=clip.fill, clip=clip.checkpoint)


def load_clip(checkpoint: str | None, device: str | None):
    """The CLIP checkpoint (default `CLIP_CHECKPOINT`), loaded once; RenderError saying what to do."""
    from semanticdraw_cli.families.clip import load_clip as load

    return load(checkpoint or D.CLIP_CHECKPOINT, device)


def score_results(results: list, clip) -> None:
    """Add `scores` to each render result's report (and its JSON file, when written)."""
    from semanticdraw_cli import outputs

    for result in results:
        result.report["scores"] = score_with(clip, result.image, result.scene).to_dict()
        if result.json is not None:
            outputs.write_json(result.json, result.report)


# --- the gate ---------------------------------------------------------------------------------


def gate_message(scored: Sequence[tuple[str, dict]]) -> str | None:
    """(image label, scores dict) -> the areas below their threshold, one line each; None when all passed."""
    lines = [
        f"{printable(label)}: {printable(area['name'])} scored {area['score']:.2f}, below its minimum {area['min_score']:g}"
        for label, scores in scored
        for area in (*scores["regions"], scores["background"])
        if area is not None and not area["passed"]
    ]
    if not lines:
        return None
    return f"prompt adherence: {len(lines)} area(s) below the minimum CLIP score (exit {GATE_EXIT_CODE}):\n  " + (
        "\n  ".join(lines))


# --- reading a rendered picture ---------------------------------------------------------------


def read_pixels(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of a picture; SceneError (exit 2) when it cannot be read.

    Its header is checked first (no canvas is larger; a PNG holds at most MAX_PNG_CHUNKS chunks), so a
    huge picture or megabytes of empty chunks are refused before any pixel is decoded.
    """
    from semanticdraw_cli.errors import MaskError
    from semanticdraw_cli.scene.embedded import check_picture
    from semanticdraw_cli.scene.rasterize import read_rgb
    from semanticdraw_cli.scene.safe_io import InputRefused

    try:
        check_picture(Path(path))
        return read_rgb(Path(path))
    except InputRefused as error:
        if error.missing:
            raise SceneError([Problem(str(path), "", "file not found")]) from None
        raise SceneError([Problem(str(path), "", error.reason, hint=error.hint)]) from None
    except MaskError as error:
        raise SceneError([Problem(str(path), "", str(error), hint=error.hint)]) from None


def embedded_scene(path: Path, overrides: Sequence[str] = (), allow_outside: bool = False) -> Scene:
    """The scene a `render` PNG embeds, with `--set`-style overrides; SceneError (exit 2) when absent or invalid.

    Its pictures must lie in the PNG's folder or below, unless `allow_outside` (as for any scene).
    """
    from semanticdraw_cli.outputs import read_embedded
    from semanticdraw_cli.scene.dicts import scene_from_dict
    from semanticdraw_cli.scene.yaml_text import parse_yaml

    try:
        scene_yaml, _ = read_embedded(path)
    except KeyError:
        message, hint = "no embedded scene (not written by semanticdraw render?)", "pass the scene that made it with --scene"
        raise SceneError([Problem(str(path), "", message, hint=hint)]) from None
    try:
        return scene_from_dict(parse_yaml(scene_yaml, str(path))[0], path, overrides, allow_outside)
    except SceneError as error:
        if any(problem.key.endswith(".mask.layer") for problem in error.problems):
            message = "its scene came from a layered drawing, whose masks a PNG does not carry"
            raise SceneError([Problem(str(path), "", message, hint="pass the drawing with --scene art.psd")]) from None
        raise


def check_canvas(path: Path, pixels: np.ndarray, scene: Scene) -> None:
    """SceneError (exit 2) when the picture is not the size of the scene's canvas."""
    height, width = pixels.shape[:2]
    if (width, height) != (scene.canvas.width, scene.canvas.height):
        raise SceneError([Problem(
            str(path), "", f"is {width}x{height} but the scene's canvas is {scene.canvas.width}x{scene.canvas.height}",
            hint="pass the scene that made it with --scene")])


# --- terminal ---------------------------------------------------------------------------------


def summary_cells(scores: dict | None) -> tuple[str, str, str]:
    """(CLIP fg, CLIP bg, lowest region) for the render summary table."""
    if scores is None:
        return "", "", ""
    regions = [a for a in scores["regions"] if a["score"] is not None]
    lowest = min(regions, key=lambda a: a["score"], default=None)
    low = "" if lowest is None else f"{shown(lowest['name'])} {lowest['score']:.2f}" + ("" if lowest["passed"] else " (below)")
    return _cell(scores["clip_fg"]), _cell(scores["clip_bg"]), low


def print_scores(console, label: str, scores: dict) -> None:
    """One table per image: every area with its pixels, score and threshold."""
    from rich.table import Table

    background = _cell(scores["clip_bg"]) or "-"
    title = f"{shown(label)}  CLIP_fg {_cell(scores['clip_fg'])}  CLIP_bg {background}  ({scores['clip']})"
    table = Table(title=title, title_justify="left")
    for column in ("area", "prompt", "pixels", "score", "min", "result"):
        table.add_column(column, justify="right" if column in ("pixels", "score", "min") else "left")
    for area in (*scores["regions"], scores["background"]):
        if area is None:
            continue
        result = "not scored (no pixel)" if area["score"] is None else ("ok" if area["passed"] else "BELOW")
        minimum = "" if area["min_score"] is None else f"{area['min_score']:g}"
        table.add_row(shown(area["name"]), shown(area["prompt"]), str(area["pixels"]), _cell(area["score"]), minimum, result)
    console.print(table)


def shown(text: object) -> str:
    """Untrusted text (a region's name or prompt, a file name) for a rich table: escaped, no markup."""
    from rich.markup import escape

    return escape(printable(text))


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _float(value) -> float | None:
    return None if value is None else float(value)
