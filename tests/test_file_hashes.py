"""File hashes for content keys: a big file is hashed once, an edit is never missed, a bad cache is no cache."""

from __future__ import annotations

import hashlib
import os

from semanticdraw_cli.file_hashes import HashCache, file_sha256


def test_a_file_is_hashed_once_and_again_after_an_edit(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"a" * 1000)
    cache = tmp_path / "cache" / "hashes.json"
    first = HashCache(cache)
    assert first.sha256(weights) == hashlib.sha256(b"a" * 1000).hexdigest() and first.hashed == 1
    first.save()
    second = HashCache(cache)
    assert second.sha256(weights) == first.sha256(weights) and second.hashed == 0
    stamp = weights.stat().st_mtime_ns
    weights.write_bytes(b"b" * 1000)  # the same size and inode: only the mtime tells, here by 1 ns
    os.utime(weights, ns=(stamp, stamp + 1))
    assert second.sha256(weights) == hashlib.sha256(b"b" * 1000).hexdigest() and second.hashed == 1


def test_a_corrupt_cache_is_an_empty_cache(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"x")
    cache = tmp_path / "hashes.json"
    cache.write_text("[not json")
    found = HashCache(cache)
    assert found.sha256(weights) == file_sha256(weights) and found.hashed == 1


def test_a_folder_hashes_every_visible_file(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "w.bin").write_bytes(b"1")
    (tmp_path / "model_index.json").write_text("{}")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "lock").write_text("")
    assert sorted(HashCache(tmp_path.parent / "h.json").tree(tmp_path)) == ["model_index.json", "unet/w.bin"]


def test_a_fifo_is_not_waited_on(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    try:
        file_sha256(fifo)
    except OSError as error:
        assert "not a regular file" in str(error)
    else:
        raise AssertionError("a FIFO was hashed")
