"""The hardware a run has: the device of the attack pass, training replicas, jobs and threads.

Lightning chooses where training runs (``trainer.accelerator: auto``, ``devices: auto``);
the stages after training (the utility and attack passes, reference signals) run on
:func:`select_device`, and results name it with :func:`device_label`. Nothing here assumes
CUDA: on a machine without a GPU every function answers for the CPU.

The resolvers (registered with :mod:`miabench.utils.resolvers`) size launchers from the
machine: ``${mia_jobs:}`` concurrent jobs for Hydra's joblib launcher, ``${mia_gpus:...}``
GPUs a SLURM job asks for, and :class:`JobThreads` gives each joblib job its share of the
cores. They exist because no library maps a Lightning ``devices`` value to a SLURM request
or splits cores between joblib workers that each run torch. torch is imported inside the
functions: configs resolve these in apps that answer ``--help`` without it.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: concurrent joblib jobs per GPU: small victims leave a GPU mostly idle, so several share it
JOBS_PER_GPU = 4


def resolve_device(spec: str) -> torch.device:
    """``auto`` → the current CUDA device when there is one, else the CPU; anything else
    (``cpu``, ``cuda:1``, ``mps``) is passed to torch as it is.

    ``auto`` does not pick Apple's MPS: several attacks compute in float64, which MPS lacks;
    ask for ``mps`` explicitly to try it.
    """
    import torch

    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    return torch.device(spec)


def select_device(cfg: DictConfig) -> torch.device:
    """The device of the stages after training: ``evaluation.device`` (default ``auto``)."""
    return resolve_device(str(OmegaConf.select(cfg, "evaluation.device", default="auto")))


def device_label(device: torch.device | str) -> str:
    """How results name a device: ``cpu``, or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def training_replicas(accelerator: Any, devices: Any) -> int:
    """How many data-parallel processes Lightning trains with for ``trainer.accelerator``
    and ``trainer.devices`` on this machine: the factor by which the effective batch grows.

    ``auto`` (or -1) means every device of the accelerator: all visible GPUs, one CPU
    process, one MPS device, as Lightning counts them. A configuration this machine cannot
    run (``gpu`` without a GPU) counts as one, the value it has where it runs alone.
    """
    if isinstance(devices, bool):
        raise ValueError(f"trainer.devices must be an int, a list or 'auto', got {devices!r}")
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and devices.strip() not in ("auto", "-1"):
        listed = [p for p in devices.split(",") if p.strip()]
        # Lightning: "2" = two devices, "1,3" or "0," = those indices
        return len(listed) if "," in devices else int(devices)
    import torch

    accelerator = str(accelerator)
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1


def slurm_gpus(accelerator: Any, devices: Any) -> int:
    """GPUs per node a SLURM job requests for ``trainer.accelerator``/``trainer.devices``.

    ``cpu`` → 0. An explicit count or list → that many. ``auto`` and -1 mean "every GPU
    there is", which a request cannot say: they ask for 1 GPU (ask for more with
    ``trainer.devices=N``, which also makes Lightning train on N).
    """
    if str(accelerator) == "cpu":
        return 0
    if devices in ("auto", -1, "-1", None):
        return 1
    return training_replicas(accelerator, devices)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def machine_jobs(jobs_per_gpu: int = JOBS_PER_GPU) -> int:
    """Concurrent jobs for this machine: ``jobs_per_gpu`` per GPU (at most one per core),
    else one per core; ``MIABENCH_JOBS`` overrides."""
    if os.environ.get("MIABENCH_JOBS"):
        return max(1, int(os.environ["MIABENCH_JOBS"]))
    import torch

    cores = usable_cores()
    if torch.cuda.is_available():
        return max(1, min(cores, int(jobs_per_gpu) * torch.cuda.device_count()))
    return cores


def threads_per_job(n_jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of ``n_jobs`` concurrent jobs: the cores shared out, at least 1."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores // max(1, int(n_jobs)))


class JobThreads(Callback):
    """Gives each job of a joblib sweep its share of the cores (``torch.set_num_threads``).

    Each joblib worker is its own process, and torch would start one thread per core in
    every one of them; ``n_jobs`` workers times all cores oversubscribes the machine, which
    is slower than one job alone. Jobs of other launchers are left as they are.
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        target = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if "joblib" not in target.lower():
            return
        n_jobs = int(OmegaConf.select(config, "hydra.launcher.n_jobs", default=1))
        if n_jobs < 1:  # joblib's -1: one job per core
            n_jobs = usable_cores()
        threads = threads_per_job(n_jobs)
        import torch

        torch.set_num_threads(threads)
        log.info(
            "joblib job: %d torch thread(s) (%d jobs on %d cores)", threads, n_jobs, usable_cores()
        )
