"""sha256 of files and folders, for content keys: model files through a small cache, so a 5 GB checkpoint is
hashed once and then recognised by its path, size, modification time and inode.

The cache is one JSON file under $SEMANTICDRAW_CACHE (`FILE_HASH_CACHE`), replaced atomically; several
processes may write it at once (the last one wins, and a lost entry is only hashed again). A file whose size,
modification time or inode changed is hashed again, so an edit is never missed; a touch costs one hash and
changes no key.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

from semanticdraw_cli.defaults import FILE_HASH_CACHE

CHUNK = 1 << 22  # bytes per read


def file_sha256(path: Path | str) -> str:
    """The sha256 of a regular file's bytes (links followed); OSError for anything else (a FIFO is not waited on)."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def cache_file() -> Path:
    """$SEMANTICDRAW_CACHE/FILE_HASH_CACHE (default cache folder ~/.cache/semanticdraw)."""
    root = os.environ.get("SEMANTICDRAW_CACHE") or Path.home() / ".cache" / "semanticdraw"
    return Path(root) / FILE_HASH_CACHE


class HashCache:
    """sha256 of files by (real path, size, mtime_ns, inode); `save` writes the entries added."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_file()
        self.entries = _read(self.path)
        self.hashed = 0  # files hashed by this object (not found in the cache)
        self._changed = False

    def sha256(self, path: Path | str) -> str:
        real = os.path.realpath(path)
        status = os.stat(real)
        signature = [status.st_size, status.st_mtime_ns, status.st_ino]
        known = self.entries.get(real)
        if isinstance(known, dict) and known.get("signature") == signature and isinstance(known.get("sha256"), str):
            return known["sha256"]
        digest = file_sha256(real)
        self.hashed += 1
        self.entries[real] = {"signature": signature, "sha256": digest}
        self._changed = True
        return digest

    def tree(self, path: Path | str) -> dict[str, str]:
        """{relative name: sha256} of a file (one entry, its name) or of every file under a folder, sorted;
        hidden files and folders (".cache", ".git") are left out."""
        path = Path(path)
        if not path.is_dir():
            return {path.name: self.sha256(path)}
        found = {}
        for folder, folders, files in os.walk(path):
            folders[:] = sorted(name for name in folders if not name.startswith("."))
            for name in sorted(files):
                full = Path(folder) / name
                if not name.startswith(".") and full.is_file():
                    found[full.relative_to(path).as_posix()] = self.sha256(full)
        return found

    def save(self) -> None:
        """Write the cache when something was added; a cache that cannot be written is left as it was."""
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(handle, "w") as out:
                json.dump({**_read(self.path), **self.entries}, out)
            os.replace(temporary, self.path)
        except OSError:
            return
        self._changed = False


def _read(path: Path) -> dict:
    """The cache's entries; an unreadable or foreign file is an empty cache (every file is hashed again)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
