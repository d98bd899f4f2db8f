"""pix2pix generators as junyanz/pytorch-CycleGAN-and-pix2pix saves them.

``checkpoints/<name>/latest_net_G.pth`` or ``<epoch>_net_G.pth``: the generator's plain
state dict (saved from ``net.module`` on GPU, so without a ``module.`` prefix). ``--netG
unet_256`` / ``unet_128`` load into :class:`~miabench.victims.nets.unet.UnetGenerator`
(``num_downs`` 8 / 7; same key names ``model.model.…``); ``--netG resnet_9blocks`` /
``resnet_6blocks`` into :class:`~miabench.victims.nets.resnet_gen.ResnetGenerator`
(``n_blocks`` 9 / 6). ``--norm batch`` (pix2pix) and ``instance`` both load; old
instance-norm files lose their running-stat keys as in the authors' loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import nn

from miabench.checkpoints.base import CheckpointInfo, require_file
from miabench.checkpoints.generators import read_generator

LAYOUT = "pix2pix"

_RESNET_BLOCK = re.compile(r"^model\.(\d+)\.conv_block\.")


def guess_architecture(state: dict[str, Any]) -> str:
    """The authors' ``--netG`` a state dict was saved from, read off its keys."""
    blocks = {m.group(1) for k in state if (m := _RESNET_BLOCK.match(k))}
    if blocks:
        return f"resnet_{len(blocks)}blocks"
    levels = max((k.count("model.") for k in state if k.startswith("model.model.")), default=0)
    return f"unet with num_downs={levels - 1}" if levels else "unknown"


def _hint(state: dict[str, Any], net: nn.Module) -> str:
    found = guess_architecture(state)
    if found.startswith("resnet"):
        n_blocks = found.split("_")[1].removesuffix("blocks")
        return (
            f"The file holds a {found} generator: set victim.module.generator._target_="
            "miabench.victims.nets.resnet_gen.ResnetGenerator ~victim.module.generator.num_downs "
            f"+victim.module.generator.n_blocks={n_blocks} (and its norm, ngf, dropout)"
        )
    if found.startswith("unet"):
        return (
            f"The file holds a {found} generator (8: unet_256, 7: unet_128): check "
            "victim.module.generator (num_downs, ngf, norm, in/out channels)"
        )
    return ""


def read(module: Any, path: Path) -> CheckpointInfo:
    """Load an authors' ``*_net_G.pth`` into ``module.generator`` after a strict check.

    Raises:
        CheckpointError: naming the file, the layout, the first mismatched keys and the
            ``--netG`` the file looks like.
        FileNotFoundError: no such file.
    """
    path = require_file(path, LAYOUT)
    info = read_generator(module, path, LAYOUT, _hint)
    norms = {type(m).__name__ for m in module.generator.modules() if "Norm" in type(m).__name__}
    info.details["norm"] = sorted(norms)
    info.details["architecture"] = guess_architecture(dict(module.generator.state_dict()))
    return info
