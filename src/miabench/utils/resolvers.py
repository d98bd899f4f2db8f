"""OmegaConf resolvers the configs use; registered when miabench is imported."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

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


def class_count(classes: Mapping | Sequence) -> int:
    """Classes of a served label map from a configured class set.

    A mapping (``{class: [parts]}``, CelebAMask-HQ) leaves background implicit: its length
    + 1. A list (``[background, face, ...]``, the mask folder) names every class: its length.
    """
    if isinstance(classes, (Mapping, DictConfig)):
        return len(classes) + 1
    if isinstance(classes, (Sequence, ListConfig)) and not isinstance(classes, str):
        return len(classes)
    raise ValueError(f"data.classes: expected a mapping or a list, got {classes!r}")


def segmentation_head(num_classes: int) -> int:
    """Output channels of a segmenter: one sigmoid channel for 2 classes, else one per class."""
    return 1 if int(num_classes) == 2 else int(num_classes)


def segmentation_loss(num_classes: int) -> str:
    """The loss matching :func:`segmentation_head`: ``bce`` for 2 classes, else ``ce``."""
    return "bce" if int(num_classes) == 2 else "ce"


def is_binary(num_classes: int) -> bool:
    """True for a two-class (background / foreground) label map."""
    return int(num_classes) == 2


#: name -> function of every resolver the configs use
RESOLVERS = {
    "mia_dirname": safe_dirname,
    # a segmenter that follows its data's class set (conf/victim/unet_smp.yaml, ...)
    "mia_class_count": class_count,
    "mia_seg_head": segmentation_head,
    "mia_seg_loss": segmentation_loss,
    "mia_binary": is_binary,
}


def register() -> None:
    """Register every resolver of :data:`RESOLVERS`, and the machine's sizes
    (:mod:`miabench.utils.device`): ``${mia_jobs:}`` (concurrent joblib jobs),
    ``${mia_gpus:accelerator,devices}`` (a SLURM job's GPUs) and ``${mia_add:a,b}`` (a
    model's seed in a sweep). Idempotent."""
    from miabench.utils import device  # noqa: PLC0415 - torch only inside its functions

    resolvers = {
        **RESOLVERS,
        "mia_jobs": lambda per_gpu=device.JOBS_PER_GPU: device.machine_jobs(int(per_gpu)),
        "mia_gpus": device.slurm_gpus,
        "mia_tasks": lambda accelerator, devices: max(1, device.slurm_gpus(accelerator, devices)),
        "mia_add": lambda *values: sum(int(v) for v in values),
    }
    for name, function in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
