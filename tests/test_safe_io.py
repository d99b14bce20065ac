"""The bounded reader and the path check: non-regular files, size limits, names no file can have, outside paths."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from semanticdraw_cli import defaults
from semanticdraw_cli.scene import safe_io
from semanticdraw_cli.scene.safe_io import (
    SCENE,
    InputRefused,
    open_archive,
    read_bytes,
    read_text,
    read_zip_member,
    resolve_path,
)


def refused(call, *args) -> InputRefused:
    with pytest.raises(InputRefused) as info:
        call(*args)
    return info.value


# --- bounded reads ---------------------------------------------------------------------------------


def test_a_fifo_is_refused_before_it_is_opened(tmp_path):
    fifo = tmp_path / "scene.yaml"
    os.mkfifo(fifo)  # no writer: opening it for reading would block forever
    error = refused(read_bytes, fifo, SCENE)
    assert str(fifo) in str(error) and "not a regular file (a FIFO)" in error.reason


def test_a_fifo_swapped_in_after_the_check_does_not_block_either(tmp_path, monkeypatch):
    fifo = tmp_path / "scene.yaml"
    os.mkfifo(fifo)
    monkeypatch.setattr(safe_io, "check_file", lambda *args: None)  # as if it was a file when checked
    assert "a FIFO" in refused(read_bytes, fifo, SCENE).reason  # opened non-blocking, refused by fstat


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_symlink_to_an_endless_device_is_refused(tmp_path, device):
    link = tmp_path / "scene.yaml"
    link.symlink_to(device)
    error = refused(read_text, link, SCENE)
    assert f"a character device: {device}" in error.reason


def test_a_folder_and_a_missing_file_are_refused(tmp_path):
    assert "a folder" in refused(read_bytes, tmp_path, SCENE).reason
    missing = refused(read_bytes, tmp_path / "nothing.yaml", SCENE)
    assert missing.missing and missing.reason == "file not found"


def test_a_file_over_its_kinds_limit_is_refused_naming_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "MAX_SCENE_BYTES", 100)
    path = tmp_path / "scene.yaml"
    path.write_bytes(b"x" * 101)
    error = refused(read_bytes, path, SCENE)
    assert "is 101 bytes; a scene file may have at most 100" in error.reason
    path.write_bytes(b"x" * 100)
    assert read_bytes(path, SCENE) == b"x" * 100


def test_reads_stop_one_byte_past_the_limit_whatever_the_file_claims(tmp_path, monkeypatch):
    """A file whose size grows while read (or that reports 0 bytes, as /proc files do) is cut off."""
    monkeypatch.setattr(defaults, "MAX_SCENE_BYTES", 10)
    monkeypatch.setattr(safe_io, "_check_stat", lambda *args: None)
    path = tmp_path / "scene.yaml"
    path.write_bytes(b"y" * 5000)
    assert "holds more than 10 bytes" in refused(read_bytes, path, SCENE).reason


def test_text_must_be_utf8(tmp_path):
    path = tmp_path / "scene.yaml"
    path.write_bytes("prompt: caf\u00e9".encode("latin-1"))
    error = refused(read_text, path, SCENE)
    assert "not UTF-8 text (byte 0xe9 at offset 11)" in error.reason
    path.write_bytes("\ufeffprompt: caf\u00e9".encode())
    assert read_text(path, SCENE) == "prompt: caf\u00e9"


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def patched(data: bytes, local: int, central: int, value: int) -> bytes:
    """The one-member archive with a 2-byte field set in its local header and its directory entry."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = out.index(signature) + offset
        out[at:at + 2] = value.to_bytes(2, "little")
    return bytes(out)


def member_refusal(data: bytes, limit: int = 1 << 20) -> InputRefused:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return refused(read_zip_member, archive, "layer.png", limit)


def test_archive_members_are_inflated_with_a_cap():
    bomb = zip_bytes({"layer.png": bytes(2 << 20)}, zipfile.ZIP_DEFLATED)  # 2 MiB of zeros in ~2 KB
    assert len(bomb) < 10_000
    assert "declares 2,097,152 bytes; at most 1,048,576 are read" in member_refusal(bomb).reason
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        assert read_zip_member(archive, "layer.png", 1 << 20, head=8) == bytes(8)  # a header costs no more
        assert len(read_zip_member(archive, "layer.png", 2 << 20)) == 2 << 20


def test_damaged_encrypted_and_unsupported_members_are_refused():
    good = zip_bytes({"layer.png": b"pixels" * 100})
    assert "is encrypted" in member_refusal(patched(good, 6, 8, 1)).reason  # general-purpose flag bit 0
    assert "compression method 99" in member_refusal(patched(good, 8, 10, 99)).reason
    damaged = good.replace(b"pixelspixels", b"pixelsPIXELS", 1)
    assert "cannot be read (Bad CRC-32" in member_refusal(damaged).reason
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        assert refused(read_zip_member, archive, "other.png", 100).missing


def test_archives_listing_too_many_members_are_refused_before_parsing(monkeypatch):
    monkeypatch.setattr(defaults, "MAX_ORA_MEMBERS", 2)
    data = zip_bytes({f"m{i}": b"" for i in range(3)})
    assert "lists 3 files; at most 2" in refused(open_archive, io.BytesIO(data), "art.ora").reason
    assert "not a zip archive" in refused(open_archive, io.BytesIO(b"plain text"), "art.ora").reason


# --- paths named by a scene --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a\0b.png", "NUL byte"),
        ("\ud800.png", "cannot be encoded as a file name"),
        ("~nosuchuser-xyz/x.png", "no user 'nosuchuser-xyz'"),
        ("x" * 300 + ".png", "too long for a file name"),
        ("d/" * 3000 + "x.png", "too long for a file name"),
        ("loop.png", "symlink loop"),
        ("loop.png/x.png", "symlink loop"),
    ],
)
def test_names_no_file_can_have_are_refused(tmp_path, text, words):
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(tmp_path / "loop.png")
    error = refused(resolve_path, text, tmp_path, False)
    assert words in error.reason


def test_paths_must_stay_inside_the_base_folder_unless_allowed(tmp_path):
    scene_dir = tmp_path / "scene"
    (scene_dir / "masks").mkdir(parents=True)
    (scene_dir / "masks" / "m.png").write_bytes(b"")
    (tmp_path / "outside.png").write_bytes(b"")
    (scene_dir / "sneaky.png").symlink_to(tmp_path / "outside.png")
    assert resolve_path("masks/m.png", scene_dir, True) == scene_dir / "masks" / "m.png"
    assert resolve_path("masks/../masks/m.png", scene_dir, True) == scene_dir / "masks" / "m.png"
    assert resolve_path("missing.png", scene_dir, True) == scene_dir / "missing.png"  # readers report it
    for text in ("../outside.png", str(tmp_path / "outside.png"), "sneaky.png", "../nothing.png"):
        error = refused(resolve_path, text, scene_dir, True)
        assert "outside the scene's folder" in error.reason and "--allow-outside" in error.hint
        assert resolve_path(text, scene_dir, False).parent == tmp_path

