"""What the conditional-GAN readers (pix2pix, pix2pixHD, SPADE) share.

Their authors save each network alone (``torch.save(net.state_dict())`` →
``<epoch>_net_G.pth``, ``latest_net_G.pth``), and their loaders forgive files written by
PyTorch before 0.4: pytorch-CycleGAN-and-pix2pix's ``__patch_instance_norm_state_dict`` drops
the ``running_mean`` / ``running_var`` / ``num_batches_tracked`` entries of InstanceNorm
layers that track no statistics, and pix2pixHD loads only the entries its network has.
:func:`drop_instance_norm_stats` does exactly the first (and records what it dropped); every
other difference is refused by the strict check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from miabench.checkpoints.base import (
    SHOWN_KEYS,
    CheckpointError,
    CheckpointInfo,
    file_sha256,
    safe_load,
    strict_load,
    unwrap_state,
)

_STATS = ("running_mean", "running_var", "num_batches_tracked")
_EPOCH = re.compile(r"^(?P<epoch>[^_]+)_net_(?P<net>[A-Z])\.pth$")


def drop_instance_norm_stats(net: nn.Module, state: dict[str, Any]) -> list[str]:
    """Remove (in place) the running-statistics entries of InstanceNorm layers that keep none.

    Returns:
        The keys removed, sorted.
    """
    dropped = []
    for key in list(state):
        owner, _, leaf = key.rpartition(".")
        if leaf not in _STATS:
            continue
        try:
            layer = net.get_submodule(owner)
        except AttributeError:
            continue  # not a layer of this network: the strict check names it
        if isinstance(layer, nn.modules.instancenorm._InstanceNorm) and (
            getattr(layer, leaf, None) is None
        ):
            del state[key]
            dropped.append(key)
    return sorted(dropped)


def epoch_of(path: Path) -> str | None:
    """The ``<epoch>`` of an authors' ``<epoch>_net_G.pth`` (``latest`` or a number)."""
    found = _EPOCH.match(path.name)
    return found.group("epoch") if found else None


def read_network(
    net: nn.Module,
    path: Path,
    layout: str,
    hint: Callable[[dict[str, Any], nn.Module], str] | None = None,
) -> dict[str, Any]:
    """Load one network file saved as its authors save it into ``net``, strictly.

    Args:
        net: the network (generator, encoder) of the victim.
        path: the ``*_net_<X>.pth`` file.
        layout: named in errors and in the returned details.
        hint: ``(state, net) -> text`` appended to a key mismatch (which option builds the
            structure this file was saved from).

    Returns:
        Details for :class:`CheckpointInfo`: network class, epoch, dropped keys.

    Raises:
        CheckpointError: the file is unreadable, not a state dict, or its keys or shapes are
            not ``net``'s.
    """
    state = unwrap_state(safe_load(path, layout), path, layout)
    dropped = drop_instance_norm_stats(net, state)
    try:
        strict_load(net, state, path, layout)
    except CheckpointError as err:
        extra = hint(state, net) if hint is not None else ""
        if not extra:
            raise
        raise CheckpointError(path, layout, f"{err.problem}. {extra}") from err
    details: dict[str, Any] = {
        "network": f"{type(net).__module__}.{type(net).__qualname__}",
        "epoch": epoch_of(path),
        "n_tensors": len(state),
    }
    if dropped:
        details["dropped_instance_norm_stats"] = {
            "count": len(dropped),
            "first": dropped[:SHOWN_KEYS],
            "why": "InstanceNorm layers without running statistics (files from PyTorch < 0.4); "
            "the authors' loader drops them too",
        }
    return details


def read_generator(
    module: Any,
    path: Path,
    layout: str,
    hint: Callable[[dict[str, Any], nn.Module], str] | None = None,
) -> CheckpointInfo:
    """:func:`read_network` into ``module.generator``, as a :class:`CheckpointInfo`."""
    details = read_network(module.generator, path, layout, hint)
    return CheckpointInfo(str(path), file_sha256(path), layout, details)
