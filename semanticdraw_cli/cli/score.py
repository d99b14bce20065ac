"""`semanticdraw score` and the CLIP gate that `render --score` shares with it (exit 3 below a threshold)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from semanticdraw_cli.cli.support import AllowOutside
from semanticdraw_cli.cli.support import check_runtime_options as _check_runtime_options
from semanticdraw_cli.cli.support import fail as _fail
from semanticdraw_cli.cli.support import load_scenes as _load_scenes
from semanticdraw_cli.defaults import CLIP_CHECKPOINT


def min_score_override(min_score: float | None, score: bool | None) -> list[str]:
    """--min-score X is --set quality.min_region_score=X; it needs the scores."""
    if min_score is None:
        return []
    if score is False:
        _fail("--min-score needs the CLIP scores: drop --no-score", 2)
    return [f"quality.min_region_score={min_score}"]


def scoring_clip(scenes: list, score: bool | None, checkpoint: str | None, device: str | None):
    """CLIP, loaded before any render when scores are asked for or a scene sets a threshold; None otherwise."""
    from semanticdraw_cli import score as scoring
    from semanticdraw_cli.errors import RenderError

    if not (score if score is not None else any(scoring.has_gate(scene) for scene in scenes)):
        return None
    try:
        return scoring.load_clip(checkpoint, device)
    except RenderError as error:
        _fail(f"error: {error}", 1)


def score_gate(scored: list[tuple[str, dict]]) -> None:
    """Exit 3 naming every area below its threshold."""
    from semanticdraw_cli.score import GATE_EXIT_CODE, gate_message

    message = gate_message(scored)
    if message:
        _fail(message, GATE_EXIT_CODE)


def score(
    images: Annotated[list[Path], typer.Argument(help="PNGs written by `semanticdraw render` (any picture with --scene).")],
    scene: Annotated[Optional[Path], typer.Option("--scene", help="Scene to score against [default: the one each PNG embeds].")] = None,
    model_clip: Annotated[Optional[str], typer.Option("--model-clip", help=f"CLIP checkpoint: hub id, folder, or preset tiny [default: {CLIP_CHECKPOINT}].")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Exit 3 when a region's score (0-100) is below X (sets quality.min_region_score).")] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda, mps, cpu [default: auto].")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the scores of every image and area as JSON.")] = False,
    allow_outside: AllowOutside = False,
) -> None:
    """CLIP score (0-100) of each region's masked crop against its prompt, and of the uncovered background."""
    import json as json_lib

    from semanticdraw_cli import score as scoring
    from semanticdraw_cli.errors import RenderError, SceneError, problem_lines

    _check_runtime_options(device, None)
    overrides = min_score_override(min_score, None)
    given, problems = _load_scenes([scene], overrides, allow_outside) if scene is not None else ([], [])
    if problems:
        _fail("\n".join(problems), 2)
    pictures = []
    for image in images:
        try:
            pixels = scoring.read_pixels(image)
            image_scene = given[0][1] if given else scoring.embedded_scene(image, overrides, allow_outside)
            scoring.check_canvas(image, pixels, image_scene)
            pictures.append((image, pixels, image_scene))
        except SceneError as error:
            problems.extend(problem_lines(error.problems))
    if problems:
        _fail("\n".join(problems), 2)
    try:
        clip = scoring.load_clip(model_clip, device)
        scored = [(str(image), scoring.score_with(clip, pixels, s).to_dict()) for image, pixels, s in pictures]
    except RenderError as error:
        _fail(f"error: {error}", 1)
    if json_:
        typer.echo(json_lib.dumps([{"image": label, **scores} for label, scores in scored], indent=2))
    else:
        from rich.console import Console

        console = Console()
        for label, scores in scored:
            scoring.print_scores(console, label, scores)
    score_gate(scored)
