"""Prompt variants: `{a|b|c}` in a prompt picks one option per image, or `--variants all` renders every combination.

Pure text work on scenes, before any job is planned: each image becomes a scene of its own with the chosen
prompts written out, so the PNG embeds (and `inspect` gives back) exactly what was rendered. `\\{`, `\\|`,
`\\}` and `\\\\` stay escaped in the chosen text; the encoder reads them plain (`plain`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re

from semanticdraw_cli.errors import Problem, SceneError
from semanticdraw_cli.jobs import image_seeds
from semanticdraw_cli.scene.types import Scene

MAX_COMBINATIONS = 1024  # --variants all: images per seed of one scene
MODES = ("pick", "all")
_TOKEN = re.compile(r"\\[\\{}|]|\{((?:\\.|[^{}\\])*)\}")  # an escape, or a group (group 1: its options)
_ESCAPE = re.compile(r"\\([\\{}|])")


def groups(prompt: str) -> list[list[str]]:
    """The options of each `{...}` group of a prompt, in order (escapes kept)."""
    return [re.split(r"(?<!\\)\|", m[1]) for m in _TOKEN.finditer(prompt) if m[1] is not None]


def choose(prompt: str, picks: list[int]) -> str:
    """The prompt with group g replaced by its option picks[g] (escapes kept, so the text stays a valid prompt)."""
    options, g = groups(prompt), 0

    def replace(match: re.Match) -> str:
        nonlocal g
        if match[1] is None:
            return match[0]
        g += 1
        return options[g - 1][picks[g - 1]]

    return _TOKEN.sub(replace, prompt)


def plain(prompt: str) -> str:
    """What the encoder reads: escapes undone (`\\{` -> `{`)."""
    return _ESCAPE.sub(r"\1", prompt) if "\\" in prompt else prompt


def _prompts(scene: Scene) -> list[str]:
    texts = [region.prompt for region in scene.regions]
    return texts + ([scene.background.prompt] if scene.background.prompt is not None else [])


def has_variants(scene: Scene) -> bool:
    return any(groups(text) for text in _prompts(scene))


def combinations(scene: Scene) -> int:
    count = 1
    for text in _prompts(scene):
        for options in groups(text):
            count *= len(options)
    return count


def _with_prompts(scene: Scene, texts: list[str], seed: int, variant: int | None) -> Scene:
    regions = tuple(dataclasses.replace(r, prompt=t) for r, t in zip(scene.regions, texts))
    background = scene.background
    if background.prompt is not None:
        background = dataclasses.replace(background, prompt=texts[-1])
    sampler = dataclasses.replace(scene.sampler, seed=seed, images=1)
    return dataclasses.replace(scene, regions=regions, background=background, sampler=sampler, variant=variant)


def _picked(text: str, seed: int, where: str) -> str:
    """Each group's option from a hash of (image seed, region, group index): deterministic, independent per group."""
    picks = []
    for g, options in enumerate(groups(text)):
        digest = hashlib.blake2b(f"{seed}:{where}:{g}".encode(), digest_size=8).digest()
        picks.append(int.from_bytes(digest, "little") % len(options))
    return choose(text, picks)


def picked_scene(scene: Scene, seed: int) -> Scene:
    """One image's scene: every prompt's groups resolved from the image's seed and the region's name."""
    names = [region.name for region in scene.regions] + ["background"]
    texts = [_picked(text, seed, name) for text, name in zip(_prompts(scene), names)]
    return _with_prompts(scene, texts, seed, None)


def every_combination(scene: Scene, seed: int) -> list[Scene]:
    """One scene per combination of options, K = 0, 1, ... in order (the first prompt's first group slowest)."""
    texts = _prompts(scene)
    sizes = [[len(options) for options in groups(text)] for text in texts]
    flat = [range(n) for per in sizes for n in per]
    out = []
    for k, picks in enumerate(itertools.product(*flat)):
        chosen, start = [], 0
        for text, per in zip(texts, sizes):
            chosen.append(choose(text, list(picks[start:start + len(per)])))
            start += len(per)
        out.append(_with_prompts(scene, chosen, seed, k))
    return out


def expand(scenes: list[tuple[str, Scene]], mode: str) -> list[tuple[str, Scene]]:
    """(label, scene) -> one entry per image for scenes with variants; the others as they are.

    SceneError (exit 2) naming the scene when `all` would exceed MAX_COMBINATIONS images per seed."""
    out = []
    for label, scene in scenes:
        if not has_variants(scene):
            out.append((label, scene))
            continue
        if mode == "all":
            count = combinations(scene)
            if count > MAX_COMBINATIONS:
                raise SceneError([Problem(label, "--variants", f"{count} prompt combinations; at most "
                                          f"{MAX_COMBINATIONS} are rendered", hint="use fewer {a|b} options")])
            # a label per combination: a call's images are told apart by (label, seed)
            out += [(f"{label} v{s.variant}", s) for seed in image_seeds(scene) for s in every_combination(scene, seed)]
        else:
            out += [(label, picked_scene(scene, seed)) for seed in image_seeds(scene)]
    return out
