"""Face-recognition backbones as InsightFace saves them (``backbone.pth``, arcface_torch's
``model.pt``): a plain IResNet state dict.

The victim has always read these through ``victim.net.weights``
(:func:`miabench.victims.face_recognition.load_insightface_backbone`); this reader lets
``victim.checkpoint`` do the same, so every victim imports a model one way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from miabench.checkpoints.base import CheckpointError, CheckpointInfo, require_file
from miabench.victims.face_recognition import CheckpointMismatchError

LAYOUT = "insightface_backbone"


def read(module: Any, path: Path) -> CheckpointInfo:
    """Load an InsightFace backbone state dict into ``module.backbone``, audited as is.

    Raises:
        CheckpointError: not a state dict, or not the configured backbone's keys/shapes.
        FileNotFoundError: no such file.
    """
    path = require_file(path, LAYOUT)
    try:
        info = module.use_released_backbone(path, config_key="victim.checkpoint")
    except CheckpointMismatchError as err:
        raise CheckpointError(path, LAYOUT, str(err)) from err
    details = {"backbone": type(module.backbone).__qualname__}
    return CheckpointInfo(str(path), info["weights_sha256"], LAYOUT, details)
