"""Provenance: the commit and dirtiness of a checkout, package versions, stage times."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from miabench.utils.provenance import StageClock, git_state, package_versions


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_git_state_names_the_commit_and_sees_uncommitted_edits(tmp_path: Path) -> None:
    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "a.py").write_text("x = 2\n")
    (tmp_path / "b file.py").write_text("y = 1\n")
    _git(tmp_path, "add", "b file.py")
    assert git_state(tmp_path) == {
        "commit": head,
        "dirty": True,
        "dirty_files": ["a.py", "b file.py"],
    }


def test_versions_and_stage_clock() -> None:
    versions = package_versions(("torch", "no-such-distribution-xyz"))
    assert versions["torch"] and versions["no-such-distribution-xyz"] is None
    clock = StageClock()
    try:
        with clock.stage("boom"):
            time.sleep(0.01)
            raise RuntimeError
    except RuntimeError:
        pass
    # a failed stage is still timed
    assert clock.stages["boom"]["wall_time_s"] >= 0.01
    assert clock.stages["boom"]["started"] <= clock.stages["boom"]["finished"]


def test_environment_records_the_torch_thread_count() -> None:
    import torch

    from miabench.utils.provenance import environment

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert environment()["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)
