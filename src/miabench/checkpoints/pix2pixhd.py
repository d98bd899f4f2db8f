"""pix2pixHD generators as NVIDIA/pix2pixHD saves them.

``checkpoints/<name>/latest_net_G.pth`` (or ``<epoch>_net_G.pth``): the generator's plain
state dict, ``model.<i>…`` for ``--netG global`` and ``model.<i>…`` + ``model1_1.…`` +
``model1_2.…`` for ``--netG local``. They load into the authors' structure,
:mod:`miabench.victims.nets.pix2pixhd_authors` (``victim.module.generator._target_``).
With a feature encoder (``--instance_feat``) its ``<epoch>_net_E.pth`` beside the
generator is read into ``module.encoder`` (:class:`~miabench.victims.nets.pix2pixhd_nets.
InstanceFeatureEncoder` has the authors' key names).

The released models read one-hot label maps, plus the instance-boundary channel unless
trained with ``--no_instance``: Cityscapes ``label2city_1024p`` takes 35 + 1 = 36 channels
(``victim.label_nc=35 victim.input_nc=36`` with ``data.boundary=true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from miabench.checkpoints.base import CheckpointInfo, file_sha256, require_file
from miabench.checkpoints.generators import read_generator, read_network

LAYOUT = "pix2pixhd"

_AUTHORS = "miabench.victims.nets.pix2pixhd_authors"


def _hint(state: dict[str, Any], net: nn.Module) -> str:
    local = any(k.startswith("model1_1.") for k in state)
    wanted = f"{_AUTHORS}.{'LocalEnhancer' if local else 'GlobalGenerator'}"
    built = f"{type(net).__module__}.{type(net).__qualname__}"
    if built != wanted:
        return (
            f"The file holds a {'local' if local else 'global'} generator in the authors' "
            f"structure: set victim.module.generator._target_={wanted}"
        )
    first = state.get("model.1.weight")
    if first is not None:
        return (
            f"Its first convolution reads {first.shape[1]} input channels and has "
            f"{first.shape[0]} filters: check victim.input_nc (label_nc + 1 with instance maps) "
            "and the generator's ngf / n_downsampling / n_blocks"
        )
    return ""


def read(module: Any, path: Path) -> CheckpointInfo:
    """Load an authors' ``*_net_G.pth`` (and ``*_net_E.pth`` with an encoder) strictly.

    Raises:
        CheckpointError: naming the file, the layout and the first mismatched keys.
        FileNotFoundError: the generator file, or the encoder file an encoder needs, is absent.
    """
    path = require_file(path, LAYOUT)
    info = read_generator(module, path, LAYOUT, _hint)
    encoder = getattr(module, "encoder", None)
    if encoder is None:
        return info
    e_path = require_file(path.with_name(path.name.replace("_net_G", "_net_E")), LAYOUT)
    info.details["encoder"] = read_network(encoder, e_path, LAYOUT)
    info.details["encoder"]["sha256"] = file_sha256(e_path)
    return info
