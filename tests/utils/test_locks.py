"""Cache locks: the timeout names the holder, and a killed holder releases its lock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miabench.utils.locks import LockTimeout, holder_path, lock_path, locked

HOLD = """
import sys, time
from miabench.utils.locks import locked
with locked(sys.argv[1], "victim", sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(target: Path, lock_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(target), str(lock_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_timeout_names_the_holder_and_a_killed_holder_releases(tmp_path: Path) -> None:
    target, lock_dir = tmp_path / "victims" / "pix2pix-facades-abc", tmp_path / "locks"
    proc = _holder(target, lock_dir)
    try:
        assert holder_path(lock_path(target, lock_dir)).is_file()
        with pytest.raises(LockTimeout) as err:
            with locked(target, "victim", lock_dir, timeout=0.5):
                pass
        message = str(err.value)
        assert f"pid {proc.pid}" in message and socket.gethostname() in message
        assert str(lock_path(target, lock_dir)) in message
        # SIGKILL: no cleanup runs, but the kernel drops the holder's flock
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        start = time.monotonic()
        with locked(target, "victim", lock_dir, timeout=5):
            waited = time.monotonic() - start
        assert waited < 5
    finally:
        proc.kill()
        proc.wait()


def test_locks_live_in_their_own_folder_and_are_reentrant_across_targets(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    a, b = tmp_path / "victims" / "one", tmp_path / "attacks" / "one"
    with locked(a, "victim", lock_dir), locked(b, "attack folder", lock_dir) as held:
        assert held == lock_dir / "attacks" / "one.lock"
        assert holder_path(held).is_file()
    # nothing beside the cache entries themselves, and the holder record is gone
    assert not (tmp_path / "victims").exists() and not holder_path(held).exists()
