"""The hardware helpers: device choice and label, replicas in the victim key, launcher sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import miabench  # noqa: F401 - registers the config resolvers
from miabench.utils import device
from tests.conftest import compose_cfg
from tests.pipeline.test_cache_key import _key

needs_cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="answers for a CPU machine")


@pytest.mark.parametrize(
    ("accelerator", "devices", "replicas"),
    [("cpu", 1, 1), ("gpu", [0, 2], 2), ("auto", "3", 3), ("gpu", "1,", 1), ("cpu", "0,1", 2)],
)
def test_training_replicas_counts_what_lightning_runs(accelerator, devices, replicas) -> None:
    assert device.training_replicas(accelerator, devices) == replicas


@needs_cpu_only
def test_auto_means_one_cpu_replica_and_the_cpu_device() -> None:
    assert device.training_replicas("auto", "auto") == 1
    assert device.resolve_device("auto") == torch.device("cpu")
    assert device.device_label(torch.device("cpu")) == "cpu"


def test_slurm_request_follows_the_trainer() -> None:
    assert device.slurm_gpus("cpu", "auto") == 0
    assert device.slurm_gpus("auto", "auto") == 1
    assert device.slurm_gpus("gpu", 4) == 4
    for overrides, gpus in (([], 1), (["trainer=cpu"], 0), (["trainer.devices=4"], 4)):
        cfg = compose_cfg("train_victim", ["hydra/launcher=slurm", *overrides], hydra=True)
        assert cfg.hydra.launcher.gpus_per_node == gpus, overrides
        assert cfg.hydra.launcher.tasks_per_node == max(1, gpus)


def test_parallel_launcher_shares_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIABENCH_JOBS", "3")
    cfg = compose_cfg("train_victim", ["hydra/launcher=parallel"], hydra=True)
    assert "joblib" in cfg.hydra.launcher._target_.lower()
    assert cfg.hydra.launcher.n_jobs == 3
    assert device.threads_per_job(3, cores=8) == 2
    assert device.threads_per_job(16, cores=2) == 1
    before = torch.get_num_threads()
    try:
        cfg.hydra.launcher.n_jobs = 1
        device.JobThreads().on_job_start(cfg)
        assert torch.get_num_threads() == device.usable_cores()
        torch.set_num_threads(1)
        # another launcher's jobs are left as they are
        basic = compose_cfg("train_victim", [], hydra=True)
        device.JobThreads().on_job_start(basic)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@needs_cpu_only
def test_victim_key_counts_replicas_not_accelerators(aligned_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = _key(aligned_root, out)  # trainer=default: accelerator auto, devices auto
    assert _key(aligned_root, out, "trainer=cpu") == base  # the key cached victims have
    assert _key(aligned_root, out, "trainer.devices=1") == base
    assert _key(aligned_root, out, "trainer.devices=2") != base  # DDP: twice the batch
    assert _key(aligned_root, out, "trainer.precision=bf16-mixed") != base
