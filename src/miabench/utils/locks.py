"""Inter-process locks: one job builds a cache entry, the others wait and reuse it.

Jobs of a sweep (local multiruns, SLURM arrays, DDP ranks) that need the same victim, split,
dataset or attack folder serialise on a lock file beside it; whoever gets the lock second
finds the finished entry and reuses it.

Why ``filelock.FileLock`` (with ``fallback_to_soft=True``): it takes a kernel ``flock`` on
the lock file, which the kernel releases when the holder dies, even by SIGKILL, so a killed
job never leaves the others waiting on a stale lock. Local disks, NFSv4 and Lustre/GPFS
mounted with flock support all honour it across processes and hosts. Where the filesystem
refuses ``flock`` (old NFS without lockd, some FUSE mounts), filelock falls back to a soft
lock (an exclusively created marker file holding the owner's host and pid); a crashed
holder's marker on the same host is reclaimed automatically, one from another host needs
removing by hand, which the timeout message says.

The holder writes ``<lock>.holder.json`` (host, pid, start time, command) when it gets the
lock, so a job that times out says who it waited for.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from miabench.utils.io import atomic_write_json

log = logging.getLogger(__name__)

#: How long a job waits for another one by default: a victim's training can take a day.
DEFAULT_TIMEOUT_S = float(os.environ.get("MIABENCH_LOCK_TIMEOUT", 48 * 3600))
#: How often a waiting job says that it is waiting.
_REPORT_EVERY_S = 60.0


class LockTimeout(TimeoutError):
    """Waited longer than the timeout for a lock; the message names the holder."""


def lock_path(target: str | os.PathLike, lock_dir: str | os.PathLike) -> Path:
    """Lock file of ``target`` (a folder or file): ``<lock_dir>/<parent name>/<name>.lock``.

    Locks live in a folder of their own, so listings of victims, splits and attack folders
    hold only those, and removing a cache entry keeps its lock. Cache entry names carry
    their key's hash, so the parent's name and the entry's name identify the entry on every
    host, whatever path the shared disk is mounted at.
    """
    target = Path(target)
    return Path(lock_dir) / target.parent.name / f"{target.name}.lock"


def cache_lock_dir(cfg: Any) -> Path:
    """The lock folder of a run's config: ``<paths.cache_dir>/locks``."""
    return Path(cfg.paths.cache_dir) / "locks"


def holder_path(lock_file: Path) -> Path:
    """Sidecar where the holder of ``lock_file`` records itself."""
    return lock_file.with_name(lock_file.name + ".holder.json")


def describe_holder(lock_file: str | os.PathLike) -> str:
    """Who holds ``lock_file``, as recorded by the holder ("unknown" when nothing is recorded)."""
    path = holder_path(Path(lock_file))
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "an unknown holder (no readable holder record)"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("time", 0)))
    return (
        f"pid {info.get('pid')} on host {info.get('host')} since {since} "
        f"({info.get('command', '?')})"
    )


@contextlib.contextmanager
def locked(
    target: str | os.PathLike,
    what: str,
    lock_dir: str | os.PathLike,
    timeout: float | None = None,
) -> Iterator[Path]:
    """Hold the lock of ``target`` for the ``with`` body.

    Args:
        target: the cache entry being built (folder or file).
        what: what is being built, for messages ("victim", "membership split", ...).
        lock_dir: folder of the lock files (:func:`cache_lock_dir`); see :func:`lock_path`.
        timeout: seconds to wait (``MIABENCH_LOCK_TIMEOUT`` or 48 h by default).

    Yields:
        The lock file's path.

    Raises:
        LockTimeout: naming the lock file, its holder and how to release a stale lock.
    """
    lock_file = lock_path(target, lock_dir)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    timeout = DEFAULT_TIMEOUT_S if timeout is None else float(timeout)
    lock = FileLock(str(lock_file), fallback_to_soft=True)
    start = time.monotonic()
    reported = False
    while True:
        # A short wait per attempt, so a waiting job can say whom it waits for.
        remaining = timeout - (time.monotonic() - start)
        try:
            lock.acquire(timeout=max(0.0, min(_REPORT_EVERY_S, remaining)))
            break
        except Timeout:
            if time.monotonic() - start >= timeout:
                raise LockTimeout(
                    f"{what} {target}: waited {timeout:.0f} s for {lock_file}, held by "
                    f"{describe_holder(lock_file)}. If that job is gone, delete {lock_file}; "
                    "raise the wait with MIABENCH_LOCK_TIMEOUT=<seconds>."
                ) from None
            log.info("waiting for %s %s: held by %s", what, target, describe_holder(lock_file))
            reported = True
    if reported:
        log.info("got the lock of %s %s after %.0f s", what, target, time.monotonic() - start)
    record = holder_path(lock_file)
    try:
        atomic_write_json(
            record,
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "time": time.time(),
                "command": " ".join(sys.argv)[:500],
                "what": what,
            },
        )
        yield lock_file
    finally:
        record.unlink(missing_ok=True)
        lock.release()
