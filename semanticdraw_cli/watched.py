"""What a scene reads from disk, what those files hold, and a thread that notices when one is saved.

`scene_inputs` names every file whose contents decide the scene loaded from a path; `contents` hashes
them (through the bounded reader), so a save that changes nothing (a touch, the same bytes again) is
told apart from an edit. `FileWatcher` runs `watchfiles` over the files' folders, not the files:
editors that save by writing a temporary file and renaming it over the original replace the file's
inode, and a folder watch sees the rename.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from semanticdraw_cli import outputs
from semanticdraw_cli.scene import safe_io
from semanticdraw_cli.scene.reads import absolute, scene_reads
from semanticdraw_cli.scene.types import Scene

DEBOUNCE_MS = 1_000  # longest a burst of saves is gathered before the loop hears of it
QUIET_MS = 30  # a burst ends after this long without a new change: the save-to-render delay
ARM_MS = 200  # how soon after (re)starting the watcher reports it is armed
Contents = dict[Path, "str | None"]  # file -> content hash; None when missing


def scene_inputs(path: Path, scene: Scene | None = None) -> frozenset[Path]:
    """The files of `reads.scene_reads` but the model's (read once, when it loads): the scene file, its
    same-named siblings and, once loaded, the drawing, masks, label maps, the background, control and
    reference pictures. Absolute paths; missing files are included (creating one is a change)."""
    return frozenset(read.path for read in scene_reads(path, scene) if not read.model)


def contents(files: Iterable[Path]) -> Contents:
    """Each file's content hash; None for a missing file, the refusal for one the reader will not read."""
    return {file: _digest(file) for file in files}


def kind_of(file: Path) -> safe_io.Kind:
    """The input kind the loader reads a file as, by its suffix: its byte limit bounds the hashing too."""
    return _KINDS.get(file.suffix.lower(), safe_io.PICTURE)


_KINDS = {".yaml": safe_io.SCENE, ".yml": safe_io.SCENE, ".psd": safe_io.PSD, ".ora": safe_io.ORA}


def watched_folders(files: Iterable[Path]) -> tuple[str, ...]:
    """The folders to watch for `files`: each one's folder, or its nearest existing ancestor while the
    folder is gone, so that the folder's return (removed and made again) is noticed."""
    folders = set()
    for file in files:
        folder = file.parent
        while not folder.is_dir() and folder != folder.parent:
            folder = folder.parent
        folders.add(str(folder))
    return tuple(sorted(folders))


def _identities(folders: Iterable[str]) -> tuple[tuple[int, int] | None, ...]:
    """(device, inode) of each folder, None when gone: a folder removed and made again differs."""
    found = []
    for folder in folders:
        try:
            info = os.stat(folder)
        except OSError:
            found.append(None)
        else:
            found.append((info.st_dev, info.st_ino))
    return tuple(found)


def signatures(files: Iterable[Path]) -> dict[Path, tuple[int, int, int] | None]:
    """Each file's (inode, size, modification time), None when missing: cheap, and different once a
    writer touched the file, so a read that overlapped a write is told apart from a settled one."""
    found = {}
    for file in files:
        try:
            stat = os.stat(file)
        except OSError:
            found[file] = None
        else:
            found[file] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return found


def _digest(file: Path) -> str | None:
    digest = hashlib.blake2b(digest_size=16)
    try:
        for chunk in safe_io.read_chunks(file, kind_of(file)):
            digest.update(chunk)
    except safe_io.InputRefused as refused:
        return None if refused.missing else f"refused: {refused.reason}"
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    return digest.hexdigest()


class FileWatcher:
    """A daemon thread watching the folders of some files with `watchfiles`.

    `on_saved(paths)` hears of changes to the watched files (or to anything in their folders while
    `everything` is asked, e.g. while the scene does not load and may be about to name a new file),
    `on_armed()` when the watch is in place after a start or a change of folders, or when watching
    failed (`error` says why). A watched folder that is removed is watched through its nearest existing
    ancestor until it is back: watchfiles reports the folder's own removal, and its identity is checked
    at each of watchfiles' wake-ups (a folder replaced by a rename). Both run in the watcher's thread. Changes between a restart and
    `on_armed` are not reported: compare `contents` then.
    """

    def __init__(self, on_saved: Callable[[set[Path]], None], on_armed: Callable[[], None]):
        self._on_saved, self._on_armed = on_saved, on_armed
        self._lock = threading.Lock()
        self._files: frozenset[Path] = frozenset()
        self._folders: tuple[str, ...] = ()
        self._everything = False
        self._ways: frozenset[Path] = frozenset()
        self._restart = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None  # why the thread stopped watching, if it did

    def watch(self, files: Iterable[Path], everything: bool = False) -> None:
        """Watch these files from now on; the watch restarts only when their folders change."""
        files = frozenset(absolute(file) for file in files)
        folders = watched_folders(files)
        with self._lock:
            self._files, self._everything = files, everything
            self._ways = frozenset(folder for file in files for folder in file.parents)  # folders on the way to them
            moved, self._folders = folders != self._folders, folders
            restart = self._restart
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="semanticdraw-watch", daemon=True)
            self._thread.start()
        elif moved:
            restart.set()

    def close(self) -> None:
        """Stop watching and wait (briefly) for the thread."""
        self._closed.set()
        with self._lock:
            self._restart.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            self._watch()
        except Exception as error:  # e.g. a watched folder removed: the loop reports it and ends
            self.error = error
            self._on_armed()

    def _watch(self) -> None:
        import watchfiles

        while not self._closed.is_set():
            with self._lock:
                folders = self._folders
                self._restart = restart = threading.Event()
            identity = _identities(folders)
            armed = False
            for changes in watchfiles.watch(
                *folders, watch_filter=self._wanted, stop_event=restart, debounce=DEBOUNCE_MS, step=QUIET_MS,
                rust_timeout=ARM_MS, yield_on_timeout=True, recursive=False, raise_interrupt=False,
            ):
                if not armed:
                    armed = True
                    self._on_armed()
                if changes:
                    self._on_saved({Path(path) for _, path in changes})
                gone = any(path in folders for _, path in changes)  # a watched folder itself was removed
                if gone or _identities(folders) != identity:  # (or replaced): its watch is dead
                    self._follow_folders(restart)
                    break

    def _follow_folders(self, restart: threading.Event) -> None:
        """Watch the folders as they are now (a removed one's nearest ancestor) and say the files may have changed."""
        with self._lock:
            self._folders = watched_folders(self._files)
            files = self._files
        restart.set()
        self._on_saved(set(files))

    def _wanted(self, _change: object, path: str) -> bool:
        with self._lock:
            files, everything, ways = self._files, self._everything, self._ways
        if Path(path) in files or Path(path) in ways:  # a watched file, or a removed folder made again
            return True
        return everything and outputs.TEMPORARY.fullmatch(os.path.basename(path)) is None
