"""Jobs started together on one victim key: one trains and scores, the others reuse it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline.test_cli import _fast

N_JOBS = 4


@pytest.mark.slow
def test_four_jobs_at_once_train_and_attack_one_victim_once(
    aligned_root: Path, tmp_path: Path
) -> None:
    overrides = [*_fast(aligned_root, tmp_path), "trainer.max_epochs=1"]
    env = {**os.environ, "MIABENCH_ROOT": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env["OMP_NUM_THREADS"] = "1"
    procs = []
    for job in range(N_JOBS):
        log = (tmp_path / f"job{job}.log").open("w")
        cmd = [
            sys.executable,
            "-m",
            "miabench.benchmark",
            *overrides,
            f"table.out_dir={tmp_path}/table{job}",
            # one Hydra output folder per job, as separate sweep jobs have
            f"hydra.run.dir={tmp_path}/hydra{job}",
        ]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=log))
    deadline = time.monotonic() + 600
    codes = [p.wait(timeout=max(1, deadline - time.monotonic())) for p in procs]
    logs = [(tmp_path / f"job{job}.log").read_text() for job in range(N_JOBS)]
    assert codes == [0] * N_JOBS, "\n".join(log[-2000:] for log in logs)

    trained = [job for job, log in enumerate(logs) if "trained victim →" in log]
    reused = [job for job, log in enumerate(logs) if "reusing cached victim" in log]
    scored = [job for job, log in enumerate(logs) if "results →" in log]
    assert len(trained) == 1 and sorted(trained + reused) == list(range(N_JOBS)), logs
    assert len(scored) == 1, logs
    # one training: a single Lightning metrics log, a single cache folder
    (victim,) = (tmp_path / "outputs" / "cache" / "victims").iterdir()
    assert not (victim / "checkpoints").exists()
    runs = [next((tmp_path / f"table{job}" / "runs").iterdir()) for job in range(N_JOBS)]
    results = {(run / "results.json").read_bytes() for run in runs}
    scores = {(run / "scores.csv").read_bytes() for run in runs}
    assert len(results) == 1 and len(scores) == 1
