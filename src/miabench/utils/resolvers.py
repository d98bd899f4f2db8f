"""OmegaConf resolvers the configs use; registered when miabench is imported."""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

#: Longest folder name kept verbatim (file systems allow 255 bytes per path component).
MAX_DIRNAME = 120


def safe_dirname(name: str) -> str:
    """A deterministic folder name for a run's overrides.

    Short override strings are kept as they are (readable, and the same overrides always
    give the same folder); long ones keep a readable prefix plus a hash of the whole string.
    No overrides gives ``default``.
    """
    name = name.replace("/", "_")
    if not name:
        return "default"
    if len(name) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: MAX_DIRNAME - 13]}-{digest}"


def register() -> None:
    """Register ``${mia_dirname:...}``, and the machine's sizes (:mod:`miabench.utils.device`):
    ``${mia_jobs:}`` (concurrent joblib jobs), ``${mia_gpus:accelerator,devices}`` (a SLURM
    job's GPUs) and ``${mia_add:a,b}`` (a model's seed in a sweep). Idempotent."""
    from miabench.utils import device

    resolvers = {
        "mia_dirname": safe_dirname,
        "mia_jobs": lambda per_gpu=device.JOBS_PER_GPU: device.machine_jobs(int(per_gpu)),
        "mia_gpus": device.slurm_gpus,
        "mia_tasks": lambda accelerator, devices: max(1, device.slurm_gpus(accelerator, devices)),
        "mia_add": lambda *values: sum(int(v) for v in values),
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
