"""What every checkpoint reader shares: a safe load, prefix handling, a strict key check.

A checkpoint from outside is hostile until checked (docs/architecture.md). Every reader in
this package therefore

1. reads the file with ``torch.load(weights_only=True)`` (never a blanket
   ``weights_only=False``; a reader that must accept one extra type names it in ``allow``);
2. unwraps the containers people save around a state dict (Lightning's ``state_dict``,
   ``DataParallel``'s ``module.`` prefix) with :func:`unwrap_state`;
3. checks every key and shape against the module it loads into *before* loading anything
   (:func:`strict_load`), and fails with the file, the layout it expected and the first
   missing, unexpected and wrongly-shaped keys;
4. returns a :class:`CheckpointInfo` (file, sha256, layout) that goes into results.json and
   the victim cache key.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from miabench.utils.hashing import sha256_file

#: How many keys of each kind a mismatch message names.
SHOWN_KEYS = 5


class CheckpointError(ValueError):
    """A checkpoint that is not what its layout says; the message names file and layout."""

    def __init__(self, path: str | os.PathLike, layout: str, problem: str) -> None:
        self.path = Path(path)
        self.layout = layout
        self.problem = problem
        super().__init__(f"{self.path}: not a {layout} checkpoint: {problem}")


@dataclass(frozen=True)
class CheckpointInfo:
    """Which file a victim's weights came from.

    Attributes:
        path: the file (or folder) read.
        sha256: SHA-256 of the file; of a folder, of its files in name order.
        layout: the layout it was read as (``pix2pix``, ``csail_upernet``, ...).
        details: what the reader found (architecture, epoch, norm, keys dropped ...).
    """

    path: str
    sha256: str
    layout: str
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The record that goes into results.json (``run.checkpoint``)."""
        return asdict(self)

    def key(self) -> dict[str, Any]:
        """What enters the victim cache key: the content and how it was read, not where."""
        return {"sha256": self.sha256, "layout": self.layout}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a folder's files (relative name and content, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    import hashlib  # noqa: PLC0415

    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(bytes.fromhex(sha256_file(item)))
    return digest.hexdigest()


def require_file(path: str | os.PathLike, layout: str, what: str = "checkpoint") -> Path:
    """``path`` as a Path, checked to exist; else the error names it and the layout."""
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found (expected a {layout} checkpoint)")
    return path


def safe_load(path: str | os.PathLike, layout: str, allow: Iterable[type] = ()) -> Any:
    """``torch.load(path, weights_only=True)``, with ``allow`` as the only extra types.

    Args:
        path: the file.
        layout: the layout expected, named in errors.
        allow: classes the file may hold besides tensors and containers (e.g.
            ``argparse.Namespace`` in torchvision's detection reference checkpoints). They
            are allowed for this one load only.

    Raises:
        CheckpointError: the file is truncated, not a torch file, or holds other objects
            (the refused type is named).
    """
    import torch  # noqa: PLC0415

    path = require_file(path, layout)
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message advises weights_only=False; name only the refused type
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = found.group(1) if found else "an object"
        raise CheckpointError(
            path, layout, f"it holds {what}, which is not weights; it was not unpickled"
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            path, layout, f"unreadable or truncated torch file ({type(err).__name__}: {err})"
        ) from err


def _is_tensor_dict(obj: Any) -> bool:
    import torch  # noqa: PLC0415

    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def unwrap_state(
    obj: Any, path: str | os.PathLike, layout: str, containers: Iterable[str] = ()
) -> dict[str, Any]:
    """The tensor state dict inside ``obj``, with ``module.`` prefixes removed.

    Recognised wrappers: Lightning checkpoints (``state_dict``), the key names in
    ``containers`` (e.g. ``model`` for torchvision's reference scripts, ``state_dict`` and
    ``model_state`` elsewhere), and ``DataParallel``/DDP's ``module.`` prefix on every key.

    Raises:
        CheckpointError: no tensor state dict was found.
    """
    for name in (*containers, "state_dict"):
        if isinstance(obj, Mapping) and name in obj and isinstance(obj[name], Mapping):
            obj = obj[name]
            break
    if not _is_tensor_dict(obj):
        kind = type(obj).__name__
        keys = list(obj)[:SHOWN_KEYS] if isinstance(obj, Mapping) else []
        raise CheckpointError(
            path, layout, f"no state dict of tensors found (a {kind}; top-level keys {keys})"
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _first(items: Iterable[str]) -> str:
    items = sorted(items)
    shown = ", ".join(items[:SHOWN_KEYS])
    more = f" (+{len(items) - SHOWN_KEYS} more)" if len(items) > SHOWN_KEYS else ""
    return f"{shown}{more}"


def mismatch_report(expected: Mapping[str, Any], found: Mapping[str, Any]) -> str | None:
    """None when keys and shapes agree; else the first missing, unexpected, misshaped keys."""
    missing = set(expected) - set(found)
    unexpected = set(found) - set(expected)
    misshaped = [
        f"{k} {tuple(found[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in sorted(set(expected) & set(found))
        if tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or misshaped):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_first(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
    if misshaped:
        more = f" (+{len(misshaped) - SHOWN_KEYS} more)" if len(misshaped) > SHOWN_KEYS else ""
        parts.append(
            f"{len(misshaped)} wrongly-shaped keys: {', '.join(misshaped[:SHOWN_KEYS])}{more}"
        )
    return "; ".join(parts)


def strict_load(
    module: Any, state: Mapping[str, Any], path: str | os.PathLike, layout: str
) -> None:
    """Load ``state`` into ``module`` after checking every key and shape; nothing half-loaded.

    Raises:
        CheckpointError: naming the file, the layout and the first missing, unexpected and
            wrongly-shaped keys.
    """
    problem = mismatch_report(module.state_dict(), state)
    if problem is not None:
        raise CheckpointError(path, layout, problem)
    module.load_state_dict(dict(state), strict=True)
