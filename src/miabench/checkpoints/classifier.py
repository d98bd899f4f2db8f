"""Image classifiers as timm and torchvision users save them: a plain state dict.

``torch.save(model.state_dict())`` of the configured timm network (keys ``conv1.weight``,
..., ``fc.weight``), or a miabench ``ClassifierVictim``'s own state dict (keys
``net.model.…``); a Lightning ``state_dict`` wrapper and a ``module.`` prefix are unwrapped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from miabench.checkpoints.base import (
    CheckpointInfo,
    file_sha256,
    require_file,
    safe_load,
    strict_load,
    unwrap_state,
)

LAYOUT = "classifier_state_dict"
_VICTIM_PREFIX = "net.model."


def read(module: Any, path: Path) -> CheckpointInfo:
    """Load a classifier state dict into ``module.net.model`` after a strict check.

    Raises:
        CheckpointError: unreadable, not a state dict, or not the configured network's keys.
        FileNotFoundError: no such file.
    """
    path = require_file(path, LAYOUT)
    state = unwrap_state(safe_load(path, LAYOUT), path, LAYOUT)
    if all(k.startswith(_VICTIM_PREFIX) for k in state):
        state = {k[len(_VICTIM_PREFIX) :]: v for k, v in state.items()}
    net = module.net.model
    strict_load(net, state, path, LAYOUT)
    details = {"network": type(net).__qualname__, "n_tensors": len(state)}
    return CheckpointInfo(str(path), file_sha256(path), LAYOUT, details)
