"""The content-hash cache: same digests with and without it, re-hash on change, shared files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from miabench.data.aligned import AlignedDataset
from miabench.utils import hashing
from miabench.utils.hashing import HASH_CACHE_ENV, ContentHashCache
from tests.conftest import write_aligned

# Files younger than this are "racy" (may change within one mtime tick) and never cached.
PAST = 1_600_000_000


def _age(paths: list[Path]) -> None:
    for i, p in enumerate(paths):
        os.utime(p, (PAST + i, PAST + i))


@pytest.fixture
def cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "cache" / "hashes.sqlite"
    monkeypatch.setenv(HASH_CACHE_ENV, str(where))
    monkeypatch.setattr(hashing, "_caches", {})
    return where


def test_records_identical_with_and_without_cache(
    tmp_path: Path, cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_aligned(tmp_path / "ds", "train", 6)
    _age(files)
    first = AlignedDataset(tmp_path / "ds", "train").records()  # fills the cache
    assert cache_file.is_file()
    calls = []
    real = hashing.sha256_array
    monkeypatch.setattr("miabench.data.aligned.sha256_array", lambda a: calls.append(1) or real(a))
    second = AlignedDataset(tmp_path / "ds", "train").records()  # all hits
    assert calls == []
    monkeypatch.setenv(HASH_CACHE_ENV, "off")
    uncached = AlignedDataset(tmp_path / "ds", "train").records()
    assert len(calls) == 6
    assert first == second == uncached


def test_changed_file_is_rehashed(tmp_path: Path, cache_file: Path) -> None:
    files = write_aligned(tmp_path / "ds", "train", 3)
    _age(files)
    before = {r.sample_id: r.sha256 for r in AlignedDataset(tmp_path / "ds", "train").records()}
    # new pixels, same path: size and mtime change, so the cached digest must not be served
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)).save(files[1])
    os.utime(files[1], (PAST + 100, PAST + 100))
    after = {r.sample_id: r.sha256 for r in AlignedDataset(tmp_path / "ds", "train").records()}
    changed = [k for k in before if before[k] != after[k]]
    assert changed == [AlignedDataset(tmp_path / "ds", "train").sample_id(files[1])]


def test_same_size_new_mtime_is_a_miss(tmp_path: Path) -> None:
    cache = ContentHashCache(tmp_path / "c.sqlite")
    f = tmp_path / "a.bin"
    f.write_bytes(b"aaaa")
    os.utime(f, (PAST, PAST))
    assert cache.digest(f, lambda: "one") == "one"
    assert cache.digest(f, lambda: "two") == "one"  # hit
    assert cache.digest(f, lambda: "three", salt="other reader") == "three"
    f.write_bytes(b"bbbb")  # same size
    os.utime(f, (PAST + 1, PAST + 1))
    assert cache.digest(f, lambda: "four") == "four"


def test_recent_files_are_not_cached(tmp_path: Path) -> None:
    cache = ContentHashCache(tmp_path / "c.sqlite")
    f = tmp_path / "fresh.bin"
    f.write_bytes(b"x")  # mtime = now: could still change within the same tick
    assert cache.digest(f, lambda: "one") == "one"
    assert cache.digest(f, lambda: "two") == "two"


def test_concurrent_writers_share_one_cache(tmp_path: Path) -> None:
    files = []
    for i in range(40):
        f = tmp_path / f"{i}.bin"
        f.write_bytes(bytes([i]) * (i + 1))
        files.append(f)
    _age(files)
    where = tmp_path / "shared.sqlite"
    errors: list[BaseException] = []

    def job() -> None:
        try:
            cache = ContentHashCache(where)  # one connection per job, as separate processes
            for f in files:
                assert cache.digest(f, lambda f=f: hashing.sha256_file(f)) == hashing.sha256_file(f)
            cache.close()
        except BaseException as err:  # noqa: BLE001 - re-raised below in the main thread
            errors.append(err)

    threads = [threading.Thread(target=job) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    probe = ContentHashCache(where)
    assert all(probe.digest(f, lambda: "miss") != "miss" for f in files)
