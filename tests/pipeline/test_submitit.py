"""The scale-out path: a multirun through hydra-submitit-launcher's local launcher (the
pickling, job folders and result collection of the SLURM launcher, without a scheduler),
with one job killed and the sweep resubmitted, equals a plain local multirun."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline.test_cli import _fast

SEEDS = "seed=0,1"


def _sweep(root: Path, overrides: list[str], launcher: str) -> subprocess.Popen:
    env = {**os.environ, "MIABENCH_ROOT": str(root), "PYTHONUNBUFFERED": "1"}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "miabench.benchmark",
        "-m",
        f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={root}/sweep",
        SEEDS,
        *overrides,
        f"table.out_dir={root}/table",
    ]
    log = (root / f"{launcher}.log").open("a")
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=log)


def _descendants(pid: int) -> list[int]:
    """Processes started by ``pid``, transitively (from /proc: the job's task processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _results(root: Path) -> dict[str, dict]:
    """results.json of every attack folder, with the run's own root taken out."""
    found = {}
    for path in sorted((root / "outputs" / "attacks").glob("*/results.json")):
        results = json.loads(path.read_text().replace(str(root), "<root>"))
        # which launcher, when and where: provenance differs between the sweeps by design
        results["run"].pop("provenance")
        found[path.parent.name] = results
    return found


@pytest.mark.slow
def test_submitit_local_sweep_with_a_killed_job_equals_a_local_multirun(
    aligned_root: Path, tmp_path: Path
) -> None:
    overrides = [o for o in _fast(aligned_root, tmp_path) if not o.startswith(("paths.", "hydra."))]
    overrides += ["trainer.max_epochs=3", "hydra.job.chdir=false"]

    plain = tmp_path / "plain"
    plain.mkdir()
    assert _sweep(plain, overrides, "local").wait(timeout=600) == 0

    scaled = tmp_path / "submitit"
    scaled.mkdir()
    sweep = _sweep(scaled, overrides, "submitit_local")
    # submitit names each local job's folder after its controller's process id: kill the
    # first job that starts training, its controller and task processes, as a crashed node
    # would (killing the controller alone leaves the task running to completion)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and sweep.poll() is None:
        for log in (scaled / "sweep" / ".submitit").glob("*/*_0_log.out"):
            if "logger csv →" in log.read_text(errors="replace"):
                killed = int(log.parent.name)
                for pid in [killed, *_descendants(killed)]:
                    with contextlib.suppress(ProcessLookupError):  # already exited
                        os.kill(pid, signal.SIGKILL)
                break
        time.sleep(0.05)
    assert killed is not None, (scaled / "submitit_local.log").read_text()[-3000:]
    assert sweep.wait(timeout=600) != 0  # the sweep reports the job that died

    # resubmitting the same sweep finishes it: the other job's results are reused, the
    # killed one resumes from its cache
    assert _sweep(scaled, overrides, "submitit_local").wait(timeout=600) == 0
    log = (scaled / "submitit_local.log").read_text()
    assert "Submitit 'local' sweep output dir" in log
    jobs = {p.name for p in (scaled / "sweep" / ".submitit").iterdir() if p.name.isdigit()}
    assert str(killed) in jobs and len(jobs) == 4  # 2 jobs, then 2 resubmitted

    results = _results(scaled)
    assert len(results) == 2 and results == _results(plain)
