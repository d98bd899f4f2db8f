"""Read PraNet and Inf-Net as their authors release them (issue 28).

``PraNet-19.pth`` (DengPingFan/PraNet) and ``Inf-Net-100.pth`` (DengPingFan/Inf-Net) are
plain ``torch.save(model.state_dict())`` files of the authors' ``PraNet`` / ``Inf_Net``
classes. They load into a victim whose network is built in the authors' structure
(:class:`~miabench.victims.nets.pranet_release.PraNetRelease` / ``InfNetRelease``), read as
layout ``pranet_release`` / ``infnet_release``. A state dict of the project's own
:class:`~miabench.victims.nets.pranet.PraNet` / ``InfNet`` loads as layout ``state_dict``.
Keys and shapes are checked before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from miabench.checkpoints.base import CheckpointError, CheckpointInfo, require_file
from miabench.checkpoints.segmentation import PLAIN, net_of, read_plain, structure_hint

#: a key every Res2Net-v1b release of these authors has (the deep stem's first conv)
_RELEASE_KEY = "resnet.conv1.0.weight"


def read(module: nn.Module, path: str | Path) -> CheckpointInfo:
    """Load a PraNet / Inf-Net state dict into the victim's ``net`` in place.

    Args:
        module: a :class:`~miabench.victims.segmentation.SegmentationVictim`.
        path: the authors' ``PraNet-19.pth`` / ``Inf-Net-100.pth`` (or any state-dict file
            of the victim's network).

    Returns:
        What was read: layout (``pranet_release``, ``infnet_release`` or ``state_dict``),
        SHA-256 of the file, the structure loaded into.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: truncated, not a state dict, or keys/shapes that do not fit.
    """
    net = net_of(module)
    layout = getattr(net, "layout", PLAIN)
    path = require_file(path, layout)
    if path.is_dir():
        raise CheckpointError(path, layout, "a folder; expected the .pth file itself")

    def hint(state: Mapping[str, Any]) -> str:
        # the authors' files show it in their first key: name the structure that fits
        if layout != PLAIN or _RELEASE_KEY not in state:
            return ""
        return structure_hint(
            net,
            "miabench.victims.nets.pranet_release.PraNetRelease (or InfNetRelease), "
            "victim.module.net.arch=res2net50d",
        )

    return read_plain(module, path, layout, hint)
