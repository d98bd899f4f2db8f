"""The Hydra apps as a user runs them: one-shot benchmark, multirun sweeps, DDP on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline.test_end_to_end import tiny_overrides

FAST = ["trainer.max_epochs=2", "attack=reconstruction", "hydra.job.chdir=false"]


def _fast(root: Path, out: Path) -> list[str]:
    overrides = tiny_overrides(root, out, *FAST)
    return [o for o in overrides if not o.startswith("attack.membership_error")]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MIABENCH_ROOT": str(cwd), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_benchmark_app_writes_table_and_plots(aligned_root: Path, tmp_path: Path) -> None:
    overrides = _fast(aligned_root, tmp_path)
    _run(["miabench.benchmark", *overrides, f"table.out_dir={tmp_path}/table"], tmp_path)
    table = tmp_path / "table"
    (run,) = (table / "runs").iterdir()
    assert run.name.startswith("pix2pix-facades-none-s0-")  # the attack folder's name
    for path in (table / "embedded_pix2pix.md", table / "embedded_pix2pix.csv"):
        assert path.stat().st_size > 0, path
    for name in ("roc_linear.png", "roc_loglog.png", "scores.csv"):
        assert (run / name).stat().st_size > 0, name
    results = json.loads((run / "results.json").read_text())
    assert results["run"]["victim"] == "pix2pix" and "reconstruction" in results["attacks"]
    provenance = results["run"]["provenance"]
    assert provenance["packages"]["torch"] and provenance["overrides"]
    assert provenance["stages"]["train"]["wall_time_s"] > 0


@pytest.mark.slow
def test_a_seed_sweep_writes_one_table_when_it_ends(aligned_root: Path, tmp_path: Path) -> None:
    overrides = _fast(aligned_root, tmp_path)
    table = tmp_path / "table"
    proc = _run(
        ["miabench.benchmark", "-m", "seed=0,1", *overrides, f"table.out_dir={table}"], tmp_path
    )
    # the jobs only record their results; the callback writes the table once, at the end
    logs = proc.stdout + proc.stderr
    assert logs.count("sweep table (2 results)") == 1, logs[-3000:]
    names = sorted(p.name.rsplit("-", 1)[0] for p in (table / "runs").iterdir())
    assert names == ["pix2pix-facades-none-s0", "pix2pix-facades-none-s1"]
    assert "Result files: 2" in (table / "embedded_pix2pix.md").read_text()


@pytest.mark.slow
def test_multirun_sweeps_seeds_with_the_local_launcher(aligned_root: Path, tmp_path: Path) -> None:
    overrides = _fast(aligned_root, tmp_path)
    _run(["miabench.train_victim", "-m", "hydra/launcher=local", "seed=0,1", *overrides], tmp_path)
    victims = sorted((tmp_path / "outputs" / "cache" / "victims").iterdir())
    assert len(victims) == 2 and all((v / "victim.pt").exists() for v in victims)
    # Each seed drew its own split, recorded beside its victim.
    manifests = {(v / "manifest.csv").read_text() for v in victims}
    assert len(manifests) == 2


@pytest.mark.slow
def test_ddp_trainer_runs_on_two_cpu_processes(aligned_root: Path, tmp_path: Path) -> None:
    overrides = _fast(aligned_root, tmp_path)
    ddp = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.sync_batchnorm=false",
    ]
    _run(["miabench.train_victim", *overrides, *ddp], tmp_path)
    (victim,) = (tmp_path / "outputs" / "cache" / "victims").iterdir()
    meta = json.loads((victim / "victim.json").read_text())
    # 8 members, batch 4, two processes: one batch per epoch each, and Lightning counts both
    # optimiser steps (D and G) of a manual-optimisation batch: 2 epochs x 1 batch x 2.
    assert meta["epochs"] == 2 and meta["global_step"] == 4
