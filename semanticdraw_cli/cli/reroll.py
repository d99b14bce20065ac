"""`render SCENE --from IMAGE.png --reroll NAME[,NAME...] [--seed N]`: the overrides that make the re-roll.

The scene rendered is SCENE with a `reroll` section (scene/reroll_fields.py), the image's seed, one image,
and a seed for every region: the re-rolled ones get N (without --seed: their seed in IMAGE, else IMAGE's
seed, plus one), the others keep theirs from IMAGE. IMAGE must come from SCENE: its embedded scene may
differ only in the re-rolled regions' fields (and the seeds and image count), else exit 2 naming what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from semanticdraw_cli.cli.support import embedded_or_fail, fail, load_scenes

FREE_SAMPLER_KEYS = ("seed", "images")  # an image is one seed of a scene's images
LISTED = 5  # differing fields named before "and N more"


def reroll_overrides(scenes: list[Path], image: Path | None, names_text: str, seed: int | None,
                     overrides: list[str], allow_outside: bool) -> list[str]:
    """`overrides` plus those of the re-roll; exit 2 on a bad name, a missing or foreign image."""
    if image is None:
        fail("--reroll needs --from IMAGE.png: the earlier render whose other regions are kept", 2)
    if len(scenes) != 1:
        fail(f"--reroll re-renders one scene's image; got {len(scenes)} scenes", 2)
    embedded, image_seed = _embedded(image)
    loaded, problems = load_scenes(scenes, overrides, allow_outside)
    if problems:
        fail("\n".join(problems), 2)
    from semanticdraw_cli.scene.dicts import scene_to_dict

    scene, names = loaded[0][1], [name.strip() for name in names_text.split(",") if name.strip()]
    known = [region.name for region in scene.regions]
    for name in names or [""]:
        if name not in known:
            fail(f"--reroll {name!r}: {scenes[0]} has no region of that name; its regions: {', '.join(known)}", 2)
    differing = differences(scene_to_dict(scene), embedded, names)
    if differing:
        shown = ", ".join(differing[:LISTED]) + (f" and {len(differing) - LISTED} more" if len(differing) > LISTED else "")
        fail(f"--from {image}: rendered from another scene than {scenes[0]} ({shown} differ); a re-roll may change "
             "only the re-rolled regions", 2)
    old_seeds = {r.get("name"): r.get("seed") for r in embedded.get("regions", []) if isinstance(r, dict)}
    extra = [f"sampler.seed={image_seed}", "sampler.images=1",
             "reroll=" + json.dumps({"from": str(image.resolve()), "regions": names})]
    for i, name in enumerate(known):
        old = old_seeds.get(name)
        new = (seed if seed is not None else (old if old is not None else image_seed) + 1) if name in names else old
        extra.append(f"regions[{i}].seed={'null' if new is None else new}")
    return overrides + extra


def _embedded(image: Path) -> tuple[dict, int]:
    """The scene dict and seed embedded in a rendered PNG; exit 2 when it holds none."""
    from semanticdraw_cli.scene.yaml_text import parse_yaml

    scene_yaml, params = embedded_or_fail(image, "--from ")
    return parse_yaml(scene_yaml, str(image))[0], int(params["seed"])


def differences(scene: dict, embedded: dict, rerolled: list[str]) -> list[str]:
    """The keys in which two scene dicts differ, leaving out what a re-roll may change."""
    scene, embedded = _normal(scene), _normal(embedded)
    for d in (scene, embedded):
        d.pop("reroll", None)
        for key in FREE_SAMPLER_KEYS:
            d.get("sampler", {}).pop(key, None)
        d.get("model", {}).pop("preview_decoder", None)  # it decodes watch's previews, no pixel of the image
        regions = [r for r in d.get("regions", []) if isinstance(r, dict)]
        d["regions"] = [r if r.get("name") not in rerolled else {"name": r.get("name")} for r in regions]
        for region in d["regions"]:
            region.pop("seed", None)  # every region's seed is set from the image
    found: list[str] = []
    _compare(scene, embedded, "", found)
    return found


def _normal(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _compare(a: object, b: object, key: str, found: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            _compare(a.get(k), b.get(k), f"{key}.{k}" if key else k, found)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _compare(x, y, f"{key}[{i}]", found)
    elif a != b:
        found.append(key)
