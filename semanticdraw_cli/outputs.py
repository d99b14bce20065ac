"""Writing results, and the output planner that checks every file a command will write before it starts.

Render writes NAME-SEED.png (the resolved scene embedded) and NAME-SEED.json (timing report). Nothing is
written half: each file goes to a temporary `.NAME.semanticdraw-PID-XXXXXXXX.tmp` in the same folder and
is renamed; the temporaries a killed run leaves are removed by the next run that writes in that folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semanticdraw_cli.errors import Problem, SceneError
from semanticdraw_cli.scene.reads import Read, scene_reads

if TYPE_CHECKING:
    from semanticdraw_cli.render import RenderResult

SCENE_KEY = "semanticdraw:scene"  # PNG text chunk holding the resolved scene as YAML
PARAMS_KEY = "semanticdraw:params"  # PNG text chunk holding seed, image index, versions as JSON
TEMPORARY = re.compile(r"\..*\.semanticdraw-(\d+)-[a-z0-9_]+\.tmp")  # our temporaries; group 1: the writer's PID
STALE_SECONDS = 24 * 3600  # a temporary this old is stale even when its PID is alive (PIDs are reused)
LISTED = 6  # existing files named in a refusal before "and N more"
_swept: set[str] = set()  # folders this process has cleared of stale temporaries


class OutputError(SceneError):
    """Outputs that would be lost or cannot be written: a clash, an existing file, a bad place. Exit code 2."""


@dataclass(frozen=True)
class PlannedImage:
    """One image a render call writes, and the scene file it comes from."""

    label: str  # the scene as given (a path, or the scene's name)
    source: str  # the scene's resolved source; equal for the same scene given twice
    seed: int
    png: Path
    report: Path


Job = tuple[str, Any, Sequence[int]]  # (the scene as given, Scene, seeds)


def output_paths(out_dir: Path, name: str, seed: int, variant: int | None = None) -> tuple[Path, Path]:
    stem = f"{name}-{seed}" if variant is None else f"{name}-{seed}-v{variant}"
    return out_dir / f"{stem}.png", out_dir / f"{stem}.json"


def plan_render(
    jobs: Sequence[Job], out_dir: Path, overwrite: bool, call: Sequence[Job] | None = None
) -> list[PlannedImage]:
    """Every file that `jobs` (label, scene, seeds) write, checked before any model loads.

    Refused with OutputError listing every problem: a file two jobs of the `call` (default: `jobs`; a
    shard writes part of its call) would both write, a file a scene of the call reads (whatever
    `overwrite` says), an existing file (unless `overwrite`), an output folder that is a file or cannot
    be written. Creates the folder when there is something to write.
    """
    out_dir = Path(out_dir)
    call = jobs if call is None else call
    planned, every = _planned(jobs, out_dir), _planned(call, out_dir)
    problems = _clashes(every, out_dir)
    problems += overwritten_inputs([path for image in every for path in (image.png, image.report)], job_reads(call))
    if not overwrite:
        problems += _existing([path for image in planned for path in (image.png, image.report)], out_dir)
    if problems:
        raise OutputError(problems)
    if planned:
        prepare_folder(out_dir, "-o names the folder for NAME-SEED.png and NAME-SEED.json")
    return planned


def job_reads(jobs: Sequence[Job]) -> list[Read]:
    """What the jobs' scenes read (`scene.reads`); a job's label is its scene file when the scene has one."""
    return [read for label, scene, _ in jobs for read in scene_reads(Path(label) if scene.source else None, scene)]


def refuse_overwriting_inputs(targets: Sequence[Path], reads: Sequence[Read]) -> None:
    """OutputError when a file to write is one a scene reads (`overwritten_inputs`)."""
    if problems := overwritten_inputs(targets, reads):
        raise OutputError(problems)


def overwritten_inputs(targets: Sequence[Path], reads: Sequence[Read]) -> list[Problem]:
    """One problem per file to write that is a file the scenes read (the same resolved path or the same
    inode: a link or a hard link) or lies inside a model folder they read. Missing files are not read."""
    by_path: dict[str, Read] = {}
    by_inode: dict[tuple[int, int], Read] = {}
    folders: list[tuple[str, Read]] = []
    for read in reads:
        try:
            found = os.stat(read.path)
        except OSError:
            continue
        real = os.path.realpath(read.path)
        if read.model and os.path.isdir(real):
            folders.append((real + os.sep, read))
        by_path.setdefault(real, read)
        by_inode.setdefault((found.st_dev, found.st_ino), read)
    problems = []
    for target in dict.fromkeys(Path(target) for target in targets):
        real = os.path.realpath(target)
        try:
            found = os.stat(target)
            read = by_path.get(real) or by_inode.get((found.st_dev, found.st_ino))
        except OSError:
            read = by_path.get(real)
        verb = "overwrite"
        if read is None:
            read = next((read for folder, read in folders if real.startswith(folder)), None)
            verb = "write inside"
        if read is None:
            continue
        shown = "" if os.path.abspath(target) == str(read.path) else f" ({read.path})"
        hint = "write somewhere else (-o); an input is never replaced, --overwrite or not"
        problems.append(Problem(str(target), "", f"the output would {verb} {read.role}{shown}", hint=hint))
    return problems


def check_output_name(target: Path, suffixes: Sequence[str], option: str = "-o") -> None:
    """A file to write must not be a folder and must end in one of `suffixes` (no side effects)."""
    target = Path(target)
    if target.is_dir():
        hint = f"e.g. {target / ('out' + suffixes[0])}"
        raise OutputError([Problem(str(target), option, "is a folder; name the file to write", hint=hint)])
    if target.suffix.lower() not in suffixes:
        found = f"an unknown extension {target.suffix!r}" if target.suffix else "no extension"
        hint = f"e.g. {target.parent / (target.stem + suffixes[0])}"
        raise OutputError([Problem(str(target), option, f"has {found}; expected {' or '.join(suffixes)}", hint=hint)])


def prepare_folder(folder: Path, hint: str | None = None) -> None:
    """Create `folder` if missing and prove it writable (a probe file); remove our stale temporaries there."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError([Problem(str(folder), "", "is a file, not a folder", hint=hint)]) from None
    except OSError as error:
        problem = Problem(str(folder), "", f"cannot create this folder ({_reason(error)})", hint=hint)
        raise OutputError([problem]) from None
    try:
        handle, probe = tempfile.mkstemp(prefix=_temporary_prefix("probe"), suffix=".tmp", dir=folder)
    except OSError as error:
        problem = Problem(str(folder), "", f"cannot write in this folder ({_reason(error)})", hint=hint)
        raise OutputError([problem]) from None
    os.close(handle)
    with contextlib.suppress(FileNotFoundError):  # another machine's sweep of a shared folder took it
        os.unlink(probe)
    remove_stale_temporaries(folder)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target`, renamed onto it on success and removed on any failure."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.realpath(target.parent) not in _swept:  # once per folder and process
        remove_stale_temporaries(target.parent)
    handle, temporary = tempfile.mkstemp(prefix=_temporary_prefix(target.name), suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove our temporaries in `folder` whose writer is gone (or that are a day old); returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    _swept.add(os.path.realpath(folder))
    for entry in entries:
        match = TEMPORARY.fullmatch(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if _process_alive(int(match[1])) and time.time() - entry.stat().st_mtime < STALE_SECONDS:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    from semanticdraw_cli.scene.embedded import read_embedded as read

    return read(path, SCENE_KEY, PARAMS_KEY)


# --- helpers ---------------------------------------------------------------------------------


def _planned(jobs: Sequence[Job], out_dir: Path) -> list[PlannedImage]:
    return [
        PlannedImage(label, _source(scene), seed, *output_paths(out_dir, scene.name, seed, scene.variant))
        for label, scene, seeds in jobs
        for seed in seeds
    ]


def _source(scene) -> str:
    return scene.name if scene.source is None else os.path.realpath(scene.source)


def _clashes(planned: list[PlannedImage], out_dir: Path) -> list[Problem]:
    """One problem per pair of jobs that would write the same files, naming both scenes."""
    first: dict[Path, PlannedImage] = {}
    pairs: dict[tuple[PlannedImage, PlannedImage], list[str]] = {}
    for image in planned:
        earlier = first.setdefault(image.png, image)
        if earlier is not image:
            pair = (_first_of(planned, earlier.label), _first_of(planned, image.label))
            pairs.setdefault(pair, []).append(image.png.name)
    problems = []
    for (a, b), names in pairs.items():
        if a.label == b.label:
            why = f"{a.label} is given twice: both would write"
        elif a.source == b.source:
            why = f"{a.label} and {b.label} are the same scene: both would write"
        else:
            why = f"{a.label} and {b.label} would both write"
        hint = "give each scene once, or render same-named scenes into separate folders with -o"
        problems.append(Problem(str(out_dir), "", f"{why} {_listing(names)}", hint=hint))
    return problems


def _first_of(planned: list[PlannedImage], label: str) -> PlannedImage:
    return next(image for image in planned if image.label == label)


def _existing(paths: list[Path], out_dir: Path) -> list[Problem]:
    found = [path.name for path in dict.fromkeys(paths) if path.exists() or path.is_symlink()]
    if not found:
        return []
    hint = "pass --overwrite to replace them, or choose another folder with -o"
    return [Problem(str(out_dir), "", f"refusing to overwrite existing outputs: {_listing(found)}", hint=hint)]


def _listing(items: Sequence[object]) -> str:
    shown = ", ".join(str(item) for item in items[:LISTED])
    return shown + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")


def _temporary_prefix(name: str) -> str:
    return f".{name[:100]}.semanticdraw-{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def write_results(results: list[RenderResult], out_dir: Path) -> None:
    """PNG (scene embedded) and JSON report per image, as NAME-SEED.png and NAME-SEED.json."""
    for result in results:
        write_result(result, *output_paths(out_dir, result.scene.name, result.seed, result.scene.variant))


def write_result(result: RenderResult, png: Path, report_path: Path) -> None:
    """One image's PNG (scene embedded) and JSON report, each replaced atomically; the save time lands in the report."""
    import yaml

    from semanticdraw_cli.scene.dicts import scene_to_dict

    start = time.perf_counter()
    scene_yaml = yaml.safe_dump(scene_to_dict(result.scene), sort_keys=False)
    params = {"seed": result.seed, "image_index": result.report["image_index"], "versions": result.report["versions"],
              "content_key": result.report.get("content_key")}
    write_png(png, result.image, scene_yaml, params)
    result.report["seconds"]["save"] = time.perf_counter() - start
    result.report["seconds"]["total"] = sum(
        value for key, value in result.report["seconds"].items() if key not in ("steps", "total")
    )
    write_json(report_path, result.report)
    result.png, result.json = png, report_path
