"""Writing results: NAME-SEED.png with the resolved scene embedded, NAME-SEED.json timing report.

Nothing is written half: each file goes to a temporary name in the same folder and is renamed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

SCENE_KEY = "semanticdraw:scene"  # PNG text chunk holding the resolved scene as YAML
PARAMS_KEY = "semanticdraw:params"  # PNG text chunk holding seed, image index, versions as JSON


def output_paths(out_dir: Path, name: str, seed: int) -> tuple[Path, Path]:
    return out_dir / f"{name}-{seed}.png", out_dir / f"{name}-{seed}.json"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target`, renamed onto it on success and removed on any failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_png(target: Path, pixels: np.ndarray, scene_yaml: str, params: dict[str, Any]) -> None:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt(SCENE_KEY, scene_yaml)
    info.add_itxt(PARAMS_KEY, json.dumps(params, sort_keys=True))
    with atomic_path(target) as temporary:
        Image.fromarray(pixels).save(temporary, format="PNG", pnginfo=info)


def write_json(target: Path, data: dict[str, Any]) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_embedded(path: Path) -> tuple[str, dict[str, Any]]:
    """(scene YAML, params) embedded in a PNG written by `render`; KeyError when absent, SceneError when refused."""
    from semanticdraw_cli.embedded import read_embedded as read

    return read(path, SCENE_KEY, PARAMS_KEY)
