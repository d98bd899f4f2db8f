"""Read UperNet / HRNetV2 segmenters as their authors save them (issue 28).

Three layouts, told apart by what ``path`` is:

* ``csail_semseg``: CSAILVision/semantic-segmentation-pytorch's release, a folder holding
  ``encoder_epoch_<N>.pth`` + ``decoder_epoch_<N>.pth`` (or the path of either file). The
  victim's network must be built in CSAIL's structure
  (:class:`~miabench.victims.nets.csail_semseg.CSAILUPerNet` or ``CSAILHRNetV2``).
* ``smp_pretrained``: a folder written by segmentation-models-pytorch's ``save_pretrained``
  (``config.json`` + ``model.safetensors``), read with ``safetensors`` (no pickle) into the
  smp model of the victim's network.
* ``state_dict``: a plain ``torch.save(model.state_dict())`` file of the victim's network
  (of the smp model inside it, for smp-built networks).

Every layout is checked key by key and shape by shape before anything is loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from miabench.checkpoints.base import (
    CheckpointError,
    CheckpointInfo,
    file_sha256,
    mismatch_report,
    require_file,
    safe_load,
    unwrap_state,
)
from miabench.utils.hashing import sha256_file

CSAIL = "csail_semseg"
SMP = "smp_pretrained"
PLAIN = "state_dict"
_EPOCH = re.compile(r"(encoder|decoder)_epoch_(\d+)\.pth")


# ---------------------------------------------------------------------------------------
# shared by the segmentation and polyp readers
# ---------------------------------------------------------------------------------------


def complete_bn_counters(expected: Mapping[str, Any], state: dict[str, Any]) -> int:
    """Add ``num_batches_tracked`` counters missing from ``state``; return how many.

    Files saved before PyTorch 0.4.1 lack them; BatchNorm reads them only when
    ``momentum=None``, so the model's own counter (0) changes no output.
    """
    missing = [k for k in expected if k.endswith(".num_batches_tracked") and k not in state]
    for key in missing:
        state[key] = expected[key].clone()
    return len(missing)


def check_state(
    target: nn.Module, state: dict[str, Any], path: Path, layout: str, hint: str = ""
) -> int:
    """Check ``state`` against ``target`` (keys and shapes) without loading it.

    Returns:
        How many BatchNorm counters were completed (:func:`complete_bn_counters`).

    Raises:
        CheckpointError: naming ``path``, ``layout`` and the first missing, unexpected and
            wrongly-shaped keys, followed by ``hint``.
    """
    expected = target.state_dict()
    filled = complete_bn_counters(expected, state)
    problem = mismatch_report(expected, state)
    if problem is not None:
        raise CheckpointError(path, layout, problem + hint)
    return filled


def read_state_file(path: Path, layout: str) -> dict[str, Any]:
    """A torch state-dict file (``weights_only``), unwrapped of ``state_dict``/``module.``."""
    return unwrap_state(safe_load(path, layout), path, layout, containers=("model",))


def net_of(module: nn.Module) -> nn.Module:
    """The segmentation network of a victim (its ``net``)."""
    net = getattr(module, "net", None)
    if not isinstance(net, nn.Module):
        raise TypeError(f"{type(module).__name__} has no segmentation network `net` to load into")
    return net


def structure_hint(net: nn.Module, wanted: str) -> str:
    """The advice appended when a file is the authors' release but the net is not."""
    return (
        f" (the victim's network is {type(net).__name__}; the authors' weights need "
        f"victim.module.net._target_={wanted} and victim.module.net.weights=none)"
    )


# ---------------------------------------------------------------------------------------
# the three layouts
# ---------------------------------------------------------------------------------------


def _smp_model(net: nn.Module) -> nn.Module | None:
    """The segmentation-models-pytorch model of ``net`` (itself or its ``model``), if any."""
    from segmentation_models_pytorch.base import SegmentationModel  # noqa: PLC0415

    for candidate in (net, getattr(net, "model", None)):
        if isinstance(candidate, SegmentationModel):
            return candidate
    return None


def _csail_pair(path: Path) -> tuple[Path, Path, int] | None:
    """``(encoder, decoder, epoch)`` if ``path`` is a CSAIL release folder or one of its files."""
    if path.is_file():
        found = _EPOCH.fullmatch(path.name)
        if found is None:
            return None
        epoch = int(found.group(2))
        folder = path.parent
    else:
        epochs = sorted(
            {int(m.group(2)) for p in path.iterdir() if (m := _EPOCH.fullmatch(p.name))}
        )
        if not epochs:
            return None
        if len(epochs) > 1:
            raise CheckpointError(
                path, CSAIL, f"it holds epochs {epochs}; give the encoder_epoch_<N>.pth to read"
            )
        epoch, folder = epochs[0], path
    encoder = folder / f"encoder_epoch_{epoch}.pth"
    decoder = folder / f"decoder_epoch_{epoch}.pth"
    for part in (encoder, decoder):
        if not part.is_file():
            raise CheckpointError(path, CSAIL, f"{part.name} is missing beside it")
    return encoder, decoder, epoch


def _read_csail(module: nn.Module, path: Path, pair: tuple[Path, Path, int]) -> CheckpointInfo:
    from miabench.victims.nets.csail_semseg import CSAILSegmentation  # noqa: PLC0415

    encoder, decoder, epoch = pair
    net = net_of(module)
    if not isinstance(net, CSAILSegmentation):
        hint = structure_hint(
            net, "miabench.victims.nets.csail_semseg.CSAILUPerNet (or CSAILHRNetV2)"
        )
        raise CheckpointError(path, CSAIL, "a CSAIL encoder/decoder pair" + hint)
    states = {part: read_state_file(part, CSAIL) for part in (encoder, decoder)}
    # both halves are checked before either is loaded: nothing half-loaded
    filled = sum(
        check_state(target, states[part], part, CSAIL)
        for part, target in ((encoder, net.encoder), (decoder, net.decoder))
    )
    net.encoder.load_state_dict(states[encoder], strict=True)
    net.decoder.load_state_dict(states[decoder], strict=True)
    hashes = {part.name: sha256_file(part) for part in (encoder, decoder)}
    digest = hashlib.sha256("".join(f"{n}:{h};" for n, h in sorted(hashes.items())).encode())
    return CheckpointInfo(
        str(path),
        digest.hexdigest(),
        CSAIL,
        {
            "structure": type(net).__name__,
            "epoch": epoch,
            "files": hashes,
            "bn_counters_added": filled,
        },
    )


def _read_smp(module: nn.Module, path: Path) -> CheckpointInfo:
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    config_file, weights_file = path / "config.json", path / "model.safetensors"
    if not weights_file.is_file():
        raise CheckpointError(path, SMP, "model.safetensors is missing beside config.json")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(config_file, SMP, f"config.json is not JSON ({err})") from err
    net = net_of(module)
    model = _smp_model(net)
    if model is None:
        raise CheckpointError(
            path, SMP, f"the victim's network {type(net).__name__} is not built with smp"
        )
    saved_class = config.get("_model_class") if isinstance(config, dict) else None
    if saved_class != type(model).__name__:
        raise CheckpointError(
            config_file,
            SMP,
            f"_model_class is {saved_class!r}, the victim has {type(model).__name__}",
        )
    try:
        state = load_file(weights_file)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(weights_file, SMP, f"unreadable or truncated ({err})") from err
    filled = check_state(model, state, weights_file, SMP)
    model.load_state_dict(state, strict=True)
    return CheckpointInfo(
        str(path),
        file_sha256(path),
        SMP,
        {
            "structure": type(model).__name__,
            "config": {k: v for k, v in config.items() if isinstance(v, str | int | float | bool)},
            "bn_counters_added": filled,
        },
    )


def read_plain(
    module: nn.Module,
    path: Path,
    layout: str = PLAIN,
    hint: Callable[[Mapping[str, Any]], str] | None = None,
) -> CheckpointInfo:
    """A plain state-dict file of the victim's network (of its smp model, if smp-built).

    ``hint(state)`` adds advice to a mismatch message (e.g. which structure the file fits).
    """
    net = net_of(module)
    target = _smp_model(net) or net
    state = read_state_file(path, layout)
    filled = check_state(target, state, path, layout, hint(state) if hint else "")
    target.load_state_dict(state, strict=True)
    return CheckpointInfo(
        str(path),
        file_sha256(path),
        layout,
        {"structure": type(target).__name__, "bn_counters_added": filled},
    )


def read(module: nn.Module, path: str | Path) -> CheckpointInfo:
    """Load a UperNet / HRNetV2 checkpoint into the victim's ``net`` in place.

    Args:
        module: a :class:`~miabench.victims.segmentation.SegmentationVictim`.
        path: a CSAIL release folder (or its ``encoder_epoch_<N>.pth``), an smp
            ``save_pretrained`` folder, or a state-dict file.

    Returns:
        What was read: layout, SHA-256 (of the file, the folder, or the CSAIL pair).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is not the layout it looks like, or does not fit the
            victim's network (the first missing, unexpected and misshaped keys are named).
    """
    path = require_file(path, f"{CSAIL}, {SMP} or {PLAIN}")
    pair = _csail_pair(path)
    if pair is not None:
        return _read_csail(module, path, pair)
    if path.is_dir():
        if (path / "config.json").is_file():
            return _read_smp(module, path)
        raise CheckpointError(
            path,
            f"{CSAIL} or {SMP}",
            "a folder without encoder_epoch_<N>.pth/decoder_epoch_<N>.pth or config.json",
        )
    return read_plain(module, path)
