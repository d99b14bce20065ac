"""Every input file is read here: regular files only, at most a documented number of bytes per kind.

A symlink to /dev/zero, a FIFO or a huge file would otherwise hang a command or exhaust memory. The
file type is checked before opening, the file is opened without blocking and checked again, and reads
stop one byte past the kind's limit (`defaults.MAX_*_BYTES`). Paths named inside a scene are resolved
by `resolve_path`: names no file can have, unknown `~user`s and symlink loops are one clear refusal
instead of an exception from the file system, and (unless allowed) so are places outside the scene's
folder.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from semanticdraw_cli import defaults

CHUNK = 1 << 20  # bytes per read() call


@dataclass(frozen=True)
class Kind:
    """A kind of input file and the `defaults` constant holding its byte limit (read at each call)."""

    noun: str  # for messages: "a scene file"
    limit_name: str  # e.g. "MAX_SCENE_BYTES"

    @property
    def limit(self) -> int:
        return getattr(defaults, self.limit_name)


SCENE = Kind("a scene file", "MAX_SCENE_BYTES")
SETTINGS = Kind("a settings file", "MAX_SETTINGS_BYTES")
PSD = Kind("a PSD file", "MAX_PSD_BYTES")
ORA = Kind("an OpenRaster file", "MAX_ORA_BYTES")
PICTURE = Kind("a picture", "MAX_PICTURE_BYTES")


class InputRefused(ValueError):
    """An input that is not read: missing, not a regular file, too large, or a path no file can have."""

    def __init__(self, path: object, reason: str, hint: str | None = None, missing: bool = False):
        self.path, self.reason, self.hint, self.missing = str(path), reason, hint, missing
        super().__init__(f"{self.path}: {reason}")


# --- bounded reads ---------------------------------------------------------------------------------


def check_file(path: Path, kind: Kind) -> os.stat_result:
    """Stat of `path` (symlinks followed) when it is a regular file within the kind's byte limit."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputRefused(path, "file not found", missing=True) from None
    except (OSError, ValueError) as error:
        raise InputRefused(path, f"cannot read it ({_why(error)})") from None
    _check_stat(path, info, kind)
    return info


@contextmanager
def open_file(path: Path, kind: Kind) -> Iterator[BinaryIO]:
    """The file opened for binary reading; never blocks on a FIFO (O_NONBLOCK) and re-checks the opened file."""
    check_file(path, kind)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise InputRefused(path, f"cannot open it ({_why(error)})") from None
    try:
        _check_stat(path, os.fstat(fd), kind)  # the file may have been swapped since the first check
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_bytes(path: Path, kind: Kind) -> bytes:
    """The whole file, refused when it holds more than the kind's limit (also when it grows while read)."""
    with open_file(path, kind) as handle:
        try:
            data = _read_capped(handle.read, kind.limit)
        except OSError as error:
            raise InputRefused(path, f"cannot read it ({_why(error)})") from None
    if len(data) > kind.limit:
        raise InputRefused(path, f"holds more than {kind.limit:,} bytes, the limit for {kind.noun}", _SMALLER)
    return data


def read_chunks(path: Path, kind: Kind) -> Iterator[bytes]:
    """The file in chunks, refused (InputRefused) once it yields more than the kind's limit.

    For files whose size says nothing of what they yield (`/proc/self/pagemap` is a regular file of
    size 0 that reads for gigabytes): hashing them must stop at the limit as reading them does.
    """
    with open_file(path, kind) as handle:
        size = 0
        try:
            while chunk := handle.read(CHUNK):
                size += len(chunk)
                if size > kind.limit:
                    raise InputRefused(path, f"holds more than {kind.limit:,} bytes, the limit for {kind.noun}", _SMALLER)
                yield chunk
        except OSError as error:
            raise InputRefused(path, f"cannot read it ({_why(error)})") from None


def _read_capped(read, limit: int) -> bytes:
    """What `read(n)` gives until its end or `limit + 1` bytes, in chunks (never one huge request)."""
    chunks, size = [], 0
    while size <= limit:
        chunk = read(min(CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_text(path: Path, kind: Kind) -> str:
    """The file as UTF-8 text (a leading byte-order mark is dropped), read through `read_bytes`."""
    data = read_bytes(path, kind)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        where = f"byte 0x{data[error.start]:02x} at offset {error.start:,}"
        raise InputRefused(path, f"not UTF-8 text ({where})", hint="save the file as UTF-8") from None


def open_archive(handle: BinaryIO, what: str) -> zipfile.ZipFile:
    """A zip archive, refused before zipfile builds an entry per member when it lists more than MAX_ORA_MEMBERS."""
    find_end = getattr(zipfile, "_EndRecData", None)  # private: the end-of-directory record zipfile reads first
    try:
        end = find_end(handle) if find_end is not None else None
    except (OSError, ValueError, struct.error):
        end = None
    count = end[getattr(zipfile, "_ECD_ENTRIES_TOTAL", 4)] if end is not None else 0
    if count > defaults.MAX_ORA_MEMBERS:
        raise InputRefused(what, f"the archive lists {count:,} files; at most {defaults.MAX_ORA_MEMBERS:,} are read")
    handle.seek(0)
    try:
        return zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, struct.error):
        raise InputRefused(what, "not a zip archive", hint="re-export it") from None


def read_zip_member(archive: zipfile.ZipFile, name: str, limit: int, head: int | None = None) -> bytes:
    """A member's bytes (or only its first `head`), inflated with a cap: at most `limit` bytes.

    Refused: a missing or encrypted member, a compression other than stored or deflated (the others
    inflate without a cap), a declared or real size over `limit`, and a damaged member (bad CRC, broken
    stream).
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise InputRefused(name, "is missing from the archive", missing=True) from None
    if info.flag_bits & 0x1:
        raise InputRefused(name, "is encrypted", hint="save it without a password")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InputRefused(name, f"uses compression method {info.compress_type}; only stored and deflated are read",
                           hint="re-export it")
    if head is None and info.file_size > limit:
        raise InputRefused(name, f"declares {info.file_size:,} bytes; at most {limit:,} are read", _SMALLER)
    try:
        with archive.open(info) as member:
            data = member.read(head) if head is not None else _read_capped(member.read, limit)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as error:
        raise InputRefused(name, f"cannot be read ({error or type(error).__name__})", "the archive is damaged; re-export it") from None
    if head is None and len(data) > limit:
        raise InputRefused(name, f"inflates to more than {limit:,} bytes", _SMALLER)
    return data


_SMALLER = "inputs larger than this are refused; make the file smaller"


def _check_stat(path: Path, info: os.stat_result, kind: Kind) -> None:
    if not stat.S_ISREG(info.st_mode):
        what = _TYPES.get(stat.S_IFMT(info.st_mode), "not a plain file")
        target = _target(path)
        raise InputRefused(path, f"not a regular file ({what}{target}); refusing to read it",
                           hint="name an ordinary file")
    if info.st_size > kind.limit:
        raise InputRefused(path, f"is {info.st_size:,} bytes; {kind.noun} may have at most {kind.limit:,}", _SMALLER)


_TYPES = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _target(path: Path) -> str:
    """`: /dev/zero` when `path` is a symlink to it; empty otherwise."""
    try:
        return f": {os.path.realpath(path)}" if os.path.islink(path) else ""
    except (OSError, ValueError):
        return ""


def _why(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


# --- paths named by a scene --------------------------------------------------------------------


def resolve_path(text: str, base: Path, confine: bool) -> Path:
    """`text` (relative to `base`, `~` expanded) as an absolute path with symlinks followed.

    Refused: a NUL byte or text that cannot be a file name, an unknown `~user`, a name too long for the
    file system, a symlink loop, and (when `confine`) a path that resolves outside `base`. A missing
    file is not refused here: readers report it with its kind.
    """
    if "\0" in text:
        raise InputRefused(repr(text), "holds a NUL byte, which no file name can", hint="remove it")
    try:
        os.fsencode(text)
    except UnicodeError:
        raise InputRefused(repr(text), "cannot be encoded as a file name", hint="write the name in plain UTF-8") from None
    expanded = os.path.expanduser(text)
    if expanded.startswith("~"):
        user = text[1:].split("/", 1)[0]
        why = f"no user {user!r} to expand ~{user} for" if user else "no home folder to expand ~ for"
        raise InputRefused(text, why, hint="write the path out")
    base = Path(base).resolve()
    try:
        resolved = (base / expanded).resolve()
    except (RuntimeError, OSError, ValueError) as error:  # RuntimeError: a symlink loop before Python 3.13
        raise _path_refused(text, error) from None
    try:
        os.stat(resolved)  # resolve() passes over a loop, a too-long name and a NUL byte silently
    except (OSError, ValueError) as error:
        if getattr(error, "errno", None) not in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
            raise _path_refused(text, error) from None
    if confine and not resolved.is_relative_to(base):
        raise InputRefused(
            text, f"resolves to {resolved}, outside the scene's folder {base}",
            hint="move the file into the scene's folder, or pass --allow-outside (allow_outside=True) to read it",
        )
    return resolved


def _path_refused(text: str, error: Exception) -> InputRefused:
    code = getattr(error, "errno", None)
    if isinstance(error, RuntimeError) or code == errno.ELOOP:
        return InputRefused(text, "is a symlink loop", hint="fix the link")
    if code == errno.ENAMETOOLONG:
        return InputRefused(_short(text), "is too long for a file name", hint="use a shorter path")
    return InputRefused(_short(text), f"cannot be looked up ({_why(error)})")


def exists(path: Path) -> bool:
    """Whether `path` exists; False for any path the file system cannot look up."""
    try:
        return os.path.exists(path)
    except (OSError, ValueError):
        return False


def _short(text: str, keep: int = 60) -> str:
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text):,} characters)"
