"""torchvision detectors as people save them: a plain state dict, or the reference script's dict.

* a plain ``state_dict`` of the detector (``torch.save(model.state_dict())``; also a
  miabench ``DetectionVictim``'s own, whose keys start with ``detector.``);
* what torchvision's detection reference script (``references/detection/train.py``) saves
  every epoch: ``{"model": state_dict, "optimizer": ..., "lr_scheduler": ..., "args":
  argparse.Namespace, "epoch": int}``. ``torch.load(weights_only=True)`` refuses the
  ``Namespace``; it is allowed for this one load, and nothing else is.

Both load into ``module.detector`` (RetinaNet, FCOS, SSDlite) after a strict check. A
detector fine-tuned from ImageNet weights has frozen BatchNorm in its backbone (no
``num_batches_tracked``): build it with the backbone's ``weights: imagenet`` (nothing is
downloaded when ``victim.checkpoint`` is set).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from miabench.checkpoints.base import (
    CheckpointError,
    CheckpointInfo,
    file_sha256,
    require_file,
    safe_load,
    strict_load,
    unwrap_state,
)

LAYOUT = "torchvision_detection"
REFERENCE_LAYOUT = "torchvision_detection_reference"
_VICTIM_PREFIX = "detector."


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def read(module: Any, path: Path) -> CheckpointInfo:
    """Load a detector state dict (plain or the reference script's) into ``module.detector``.

    Raises:
        CheckpointError: unreadable file, other pickled objects than the reference script's
            ``Namespace``, or keys and shapes that are not the configured detector's.
        FileNotFoundError: no such file.
    """
    path = require_file(path, LAYOUT)
    obj = safe_load(path, LAYOUT, allow=(argparse.Namespace,))
    reference = isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping)
    layout = REFERENCE_LAYOUT if reference else LAYOUT
    state = unwrap_state(obj, path, layout, containers=("model",))
    if all(k.startswith(_VICTIM_PREFIX) for k in state):
        state = {k[len(_VICTIM_PREFIX) :]: v for k, v in state.items()}
    try:
        strict_load(module.detector, state, path, layout)
    except CheckpointError as err:
        if not any(k.endswith("num_batches_tracked") for k in module.detector.state_dict()):
            raise
        raise CheckpointError(
            path,
            layout,
            f"{err.problem}. If only num_batches_tracked keys are missing, the file's "
            "backbone has frozen BatchNorm (fine-tuned from ImageNet): set "
            "victim.module.detector.weights=imagenet",
        ) from err
    details: dict[str, Any] = {
        "detector": type(module.detector).__qualname__,
        "n_tensors": len(state),
    }
    if reference:
        details["epoch"] = obj.get("epoch")
        args = obj.get("args")
        if isinstance(args, argparse.Namespace):
            details["args"] = {k: _plain(v) for k, v in sorted(vars(args).items())}
    return CheckpointInfo(str(path), file_sha256(path), layout, details)
