"""Stable content hashes used as cache keys and for duplicate detection."""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _canonical(obj: Any) -> Any:
    # `dropout=0` and `dropout: 0.0` configure the same thing; hash them alike.
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash a JSON-serialisable object independently of key order and of 1 vs 1.0.

    Args:
        obj: nested dicts/lists/scalars (e.g. ``OmegaConf.to_container(cfg, resolve=True)``).
        length: number of hex digits kept.
    """
    blob = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def sha256_array(array: np.ndarray) -> str:
    """SHA-256 of an array's decoded content (shape, dtype and bytes).

    Hashing decoded pixels, not file bytes, finds the same image saved twice with
    different encoders or metadata.
    """
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{array.shape}|{array.dtype}|".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in chunks (recorded so results name the exact
    checkpoint a backbone was loaded from)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- content-hash cache -------------------------------------------------------------------
# Splitting a dataset hashes every decoded image (~0.5 ms each), on every run. The digest of a
# file only changes when the file does, so it is cached keyed by (path, size, mtime_ns), as
# git and make decide staleness. sqlite3 (standard library) gives atomic, concurrent-safe
# writes from many jobs sharing one cache without a lock file of our own.

#: Environment variable naming the cache file; ``off`` disables the cache.
HASH_CACHE_ENV = "MIABENCH_HASH_CACHE"

#: A file modified this recently may still be being written within the same mtime tick
#: (git's "racy" entries): its digest is computed but not cached.
_RACY_SECONDS = 2.0
#: Entries written per transaction (one commit per image would double a first run's time).
_BATCH = 512

#: open caches by (process id, file): a forked worker must not reuse its parent's connection
_caches: dict[tuple[int, str], ContentHashCache] = {}
#: cache files that could not be opened (warned about once)
_unavailable: set[str] = set()


def default_hash_cache_path() -> Path | None:
    """Where content hashes are cached: ``$MIABENCH_HASH_CACHE``, else
    ``$XDG_CACHE_HOME/miabench/content_hashes.sqlite`` (``~/.cache`` by default); None when
    the variable is ``off``."""
    value = os.environ.get(HASH_CACHE_ENV, "")
    if value.lower() == "off":
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "miabench" / "content_hashes.sqlite"


class ContentHashCache:
    """Digests of files keyed by (path, size, mtime_ns, salt), in one sqlite3 file.

    Args:
        path: the sqlite3 file (created with its folder).

    The salt names what was hashed and with which settings (the same file decoded with
    another label mapping gives another digest). Entries are never invalidated: a changed
    file has a new (size, mtime_ns) and so a new key; stale rows only cost disk space.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers and one writer work at once; the timeout waits out other jobs'
        # writes instead of failing with "database is locked".
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # a crash can lose the last entries (they are recomputed), never corrupt the file
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS digests (path TEXT, size INTEGER, mtime_ns INTEGER,"
            " salt TEXT, digest TEXT, PRIMARY KEY (path, size, mtime_ns, salt))"
        )
        self._db.commit()
        self._pending: dict[tuple[str, int, int, str], str] = {}
        self._flushed = time.monotonic()
        atexit.register(self.flush)

    @staticmethod
    def _stats(paths: Sequence[str | os.PathLike]) -> tuple[str, int, int, float]:
        names, size, mtime_ns, newest = [], 0, 0, 0.0
        for p in paths:
            # abspath, not resolve(): no symlink walk per file (the key only has to be stable)
            path = os.path.abspath(p)
            st = os.stat(path)
            names.append(path)
            # several files (image + label map) make one key: their sizes and mtimes combined
            size = size * 1_000_003 + st.st_size
            mtime_ns = max(mtime_ns, st.st_mtime_ns)
            newest = max(newest, st.st_mtime)
        return "\n".join(names), size % (1 << 62), mtime_ns, newest

    def digest(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        compute: Callable[[], str],
        salt: str = "",
    ) -> str:
        """The cached digest of ``paths`` under ``salt``, or ``compute()`` (then cached).

        Args:
            paths: the file(s) the digest depends on.
            compute: computes the digest from the files (called only on a miss).
            salt: what is hashed and how (decoder, settings, item within the file).
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        name, size, mtime_ns, newest = self._stats(paths)
        key = (name, size, mtime_ns, salt)
        if key in self._pending:
            return self._pending[key]
        row = self._db.execute(
            "SELECT digest FROM digests WHERE path=? AND size=? AND mtime_ns=? AND salt=?", key
        ).fetchone()
        if row is not None:
            return row[0]
        value = compute()
        if time.time() - newest > _RACY_SECONDS:
            self._pending[key] = value
            if len(self._pending) >= _BATCH or time.monotonic() - self._flushed > 1.0:
                self.flush()
        return value

    def flush(self) -> None:
        """Write pending entries in one transaction (done every ``_BATCH`` entries or second,
        and at exit; a killed job loses at most those, which are recomputed next time)."""
        if self._pending:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)",
                    [(*key, value) for key, value in self._pending.items()],
                )
            self._pending.clear()
        self._flushed = time.monotonic()

    def close(self) -> None:
        """Write pending entries and close the database."""
        self.flush()
        atexit.unregister(self.flush)
        self._db.close()


def cached_digest(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    compute: Callable[[], str],
    salt: str = "",
) -> str:
    """``compute()``, cached in the default :class:`ContentHashCache` (see
    :func:`default_hash_cache_path`) keyed by the files' path, size and mtime and ``salt``.

    Falls back to computing when the cache is off or cannot be opened (read-only home).
    """
    where = default_hash_cache_path()
    if where is None or str(where) in _unavailable:
        return compute()
    key = (os.getpid(), str(where))
    cache = _caches.get(key)
    if cache is None:
        try:
            cache = _caches[key] = ContentHashCache(where)
        except (OSError, sqlite3.Error) as err:
            log.warning("content-hash cache %s unavailable (%s); hashing without it", where, err)
            _unavailable.add(str(where))
            return compute()
    return cache.digest(paths, compute, salt)


def settings_salt(obj: Any) -> str:
    """A salt naming an object's class and its scalar settings (label mapping, channels...):
    the same file read by a differently configured reader gets its own cache entry."""
    settings = {
        k: v for k, v in sorted(vars(obj).items()) if isinstance(v, (bool, int, float, str))
    }
    return f"{type(obj).__module__}.{type(obj).__qualname__}:{stable_hash(settings)}"
