"""``weights: imagenet | <path> | none``: one loader for every pretrained network.

In the style of timm's ``build_model_with_cfg``, :func:`build_with_weights` alone decides
between the three forms, loads the weights, records what was used (with the SHA-256 of a
local file) and gives the one offline message when ImageNet weights cannot be fetched. A
caller supplies only what is its own: which library builds the network (``build``), and
for a local file where its ``state_dict`` goes (``select``) or that the library reads the
file itself (``from_file``, timm).

The ImageNet weights of each backbone are named as ``python -m miabench.prefetch_weights``
names them (:func:`torchvision_name`, :func:`timm_name`, :func:`smp_name`), so the offline
message says exactly which entry to prefetch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from miabench.utils.hashing import sha256_file

if TYPE_CHECKING:
    from torch import nn

IMAGENET = "imagenet"
NONE = "none"
#: what a network's record says when ``imagenet`` was not loaded (see
#: :func:`pretrained_weights_replaced`)
REPLACED = "not loaded: replaced by victim.checkpoint"

_REPLACED: ContextVar[bool] = ContextVar("pretrained_weights_replaced", default=False)


@contextmanager
def pretrained_weights_replaced(enabled: bool = True) -> Iterator[None]:
    """Within the block, ``weights: imagenet`` builds the pretrained architecture unloaded.

    For a victim whose every weight is about to be replaced (``victim.checkpoint``, or its
    imported copy in the cache): ImageNet weights would be downloaded only to be
    overwritten, and an auditor's machine may be offline. Everything that depends on the
    choice besides the tensors (frozen BatchNorm, SSDlite's full tail) stays as for
    ``imagenet``; the record says ``REPLACED``.
    """
    token = _REPLACED.set(enabled)
    try:
        yield
    finally:
        _REPLACED.reset(token)


M = TypeVar("M", bound="nn.Module")


def weights_replaced() -> bool:
    """Whether :func:`pretrained_weights_replaced` is in effect (networks used only in
    training, such as a perceptual loss, need not be built at all)."""
    return _REPLACED.get()


def torchvision_name(arch: str, tag: str) -> str:
    """Prefetch name of torchvision's ``arch`` weights enum member ``tag``."""
    return f"torchvision:{arch}.{tag}"


def timm_name(arch: str) -> str:
    """Prefetch name of timm's default pretrained weights of ``arch``."""
    return f"timm:{arch}"


def smp_name(encoder: str) -> str:
    """Prefetch name of segmentation-models-pytorch's ``imagenet`` weights of ``encoder``."""
    return f"smp:{encoder}.imagenet"


def checkpoint_path(
    weights: str | os.PathLike, what: str = "backbone", key: str | None = None
) -> Path:
    """The local checkpoint ``weights`` names (``~`` expanded), checked to exist.

    Callers handle the keywords ``imagenet`` and ``none`` first; anything else is a file.

    Args:
        weights: the configured value.
        what: what the weights are for (named in the error).
        key: the config key that holds ``weights`` (named in the error).

    Raises:
        FileNotFoundError: naming the key, what the weights were for and the missing path.
    """
    path = Path(os.path.expanduser(str(weights)))
    if not path.is_file():
        where = f"{key}: " if key else ""
        raise FileNotFoundError(
            f"{where}{what} weights '{weights}' not found: {path} does not exist; expected "
            "'imagenet', 'none' or a state_dict file saved with torch.save"
        )
    return path


@dataclass(frozen=True)
class WeightsRecord:
    """Which weights a network was built from.

    Attributes:
        weights: the configured value (``imagenet``, ``none`` or the path as written).
        path: the local checkpoint read, if any.
        sha256: its SHA-256, if a file was read.
    """

    weights: str
    path: Path | None = None
    sha256: str | None = None

    def describe(self, prefix: str = "") -> dict[str, str]:
        """``{prefix}weights`` and, for a local file, ``{prefix}weights_sha256``."""
        out = {f"{prefix}weights": self.weights}
        if self.sha256 is not None:
            out[f"{prefix}weights_sha256"] = self.sha256
        return out


def imagenet_unavailable(what: str, name: str, key: str, err: Exception) -> RuntimeError:
    """The one message for ImageNet weights that could not be downloaded or found cached."""
    return RuntimeError(
        f"could not load the ImageNet weights of {what} ({type(err).__name__}: {err}). "
        f"Without internet, fill the cache first where there is: "
        f"`python -m miabench.prefetch_weights --only {name}`; or set "
        f"{key}=<path to a local state_dict> or {key}=none"
    )


def _mismatch(key: str, path: Path, what: str, detail: str) -> ValueError:
    return ValueError(f"{key}: {path}: not a state_dict of {what} ({detail})")


def load_state_dict_file(
    module: nn.Module,
    path: Path,
    what: str,
    key: str = "weights",
    select: Callable[[nn.Module, dict], tuple[nn.Module, dict]] | None = None,
) -> None:
    """Load the ``state_dict`` file ``path`` into ``module``; every key must match.

    Args:
        module: the network built without weights.
        path: a file written by ``torch.save(model.state_dict())`` (read ``weights_only``).
        what: the network, named in the error.
        key: the config key, named in the error.
        select: ``(module, state) -> (target, state)``: the submodule the file is for and the
            state to load into it (e.g. without a classifier head). Default: all of it.

    Raises:
        ValueError: naming the key, the path and (in torch's words) the missing and
            unexpected keys or mismatched shapes when the file is not a state_dict of ``what``.
    """
    import torch  # noqa: PLC0415 - keeps the prefetch names importable without torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise _mismatch(key, path, what, f"it holds a {type(state).__name__}")
    target, state = select(module, state) if select is not None else (module, state)
    try:
        target.load_state_dict(state)  # strict: every key must match
    except RuntimeError as err:  # torch's message lists the missing and unexpected keys
        raise _mismatch(key, path, what, str(err)) from err


def build_with_weights(
    weights: str | os.PathLike,
    build: Callable[[bool], M],
    *,
    what: str,
    imagenet: str,
    key: str = "weights",
    select: Callable[[nn.Module, dict], tuple[nn.Module, dict]] | None = None,
    from_file: Callable[[Path], M] | None = None,
    seed_none: int | None = None,
) -> tuple[M, WeightsRecord]:
    """Build a network with ``weights: imagenet | <path> | none``.

    * ``none``: ``build(False)``, random initialisation; nothing is read.
    * ``imagenet``: ``build(True)``, the library's ImageNet weights (downloaded or read from
      its cache); any failure becomes the one offline message (:func:`imagenet_unavailable`).
    * a path: checked to exist and hashed; then ``from_file(path)`` if the library reads
      the file itself, else ``build(False)`` and :func:`load_state_dict_file`.

    Args:
        weights: the configured value.
        build: ``pretrained -> network``, with the library's ImageNet weights iff
            ``pretrained``.
        what: the network, named in errors (``torchvision's resnet18``).
        imagenet: the prefetch name of its ImageNet weights (:func:`torchvision_name`, ...).
        key: the config key holding ``weights``, named in errors.
        select: where a local file's state_dict goes (see :func:`load_state_dict_file`).
        from_file: ``path -> network`` for libraries that load a local file themselves.
        seed_none: if set, ``none`` initialises from this seed without touching the global
            random state (the predictability backbone's random features must not depend on
            what ran before); if ``None``, from the global random state as it is (victims,
            seeded by the run).

    Returns:
        ``(network, record)``.

    Raises:
        FileNotFoundError: a path that does not exist (:func:`checkpoint_path`).
        ValueError: a file that is not a state_dict of ``what``.
        RuntimeError: ImageNet weights that could not be loaded.
    """
    weights = str(weights)
    if weights == NONE:
        if seed_none is None:
            return build(False), WeightsRecord(NONE)
        import torch  # noqa: PLC0415

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_none)
            return build(False), WeightsRecord(NONE)
    if weights == IMAGENET and _REPLACED.get():
        return build(False), WeightsRecord(REPLACED)
    if weights == IMAGENET:
        try:
            return build(True), WeightsRecord(IMAGENET)
        except Exception as err:  # any download / cache failure gets the same advice
            raise imagenet_unavailable(what, imagenet, key, err) from err
    path = checkpoint_path(weights, what, key)
    record = WeightsRecord(weights, path, sha256_file(path))
    if from_file is None:
        model = build(False)
        load_state_dict_file(model, path, what, key, select)
        return model, record
    try:
        return from_file(path), record
    except RuntimeError as err:
        # the library's own load_state_dict error names the missing / unexpected keys
        if "state_dict" not in str(err):
            raise
        raise _mismatch(key, path, what, str(err)) from err
