"""SPADE generators as NVlabs/SPADE saves them.

``checkpoints/<name>/latest_net_G.pth``: the generator's plain state dict, with the old
spectral-norm entries ``weight_orig`` / ``weight_u`` / ``weight_v`` and the synchronized
batch norm's running statistics. They load into the authors' structure,
:class:`miabench.victims.nets.spade_authors.SPADEGenerator`
(``victim.module.generator._target_``). The released models read one-hot label maps:
ADE20K 150 classes + don't-care = 151 channels (``--no_instance``), COCO-Stuff 182 + 1 +
instance edge = 184, Cityscapes 35 + instance edge = 36 (``num_upsampling_layers: more``,
``aspect_ratio: 2``); ``victim.input_nc`` must equal that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from miabench.checkpoints.base import CheckpointError, CheckpointInfo, require_file
from miabench.checkpoints.generators import read_generator

LAYOUT = "spade"

_AUTHORS = "miabench.victims.nets.spade_authors.SPADEGenerator"


def _hint(state: dict[str, Any], net: nn.Module) -> str:
    built = f"{type(net).__module__}.{type(net).__qualname__}"
    if built != _AUTHORS:
        return f"Released SPADE files load into victim.module.generator._target_={_AUTHORS}"
    fc = state.get("fc.weight")
    if fc is not None and fc.ndim == 4:
        return (
            f"Its first layer reads {fc.shape[1]} label channels with ngf {fc.shape[0] // 16}: "
            "check victim.input_nc, generator.ngf, num_upsampling_layers and crop_size"
        )
    return ""


def read(module: Any, path: Path) -> CheckpointInfo:
    """Load an authors' ``*_net_G.pth`` into ``module.generator`` after a strict check.

    Raises:
        CheckpointError: naming the file, the layout and the first mismatched keys; or a
            victim with a VAE encoder (the released models have none; reading the
            authors' ``net_E`` is not supported).
        FileNotFoundError: no such file.
    """
    path = require_file(path, LAYOUT)
    if getattr(module, "encoder", None) is not None:
        raise CheckpointError(
            path,
            LAYOUT,
            "the victim has a VAE encoder (victim.module.encoder); the released SPADE models "
            "have none and reading the authors' net_E.pth is not supported: set "
            "victim.module.encoder=null victim.module.generator.use_vae=false",
        )
    return read_generator(module, path, LAYOUT, _hint)
