"""One entry point for ``victim.checkpoint``: the generic layouts, then the family's reader.

Two layouts belong to no family, as miabench itself writes them:

* a **miabench victim folder** (``victim.pt`` + ``victim.json``, e.g. copied from the cache
  of another machine): the whole LightningModule's state dict, checked against the victim
  class its ``victim.json`` names;
* a **Lightning ``.ckpt``** (``trainer.save_checkpoint`` / ``ModelCheckpoint``): the whole
  LightningModule's ``state_dict``, whose saved hyper-parameters must be those of the
  configured victim class (the same names; values that differ are recorded).

Anything else goes to the family's reader (``victim.checkpoint_reader``), which reads the
file as its authors save it. Every path checks keys and shapes before loading anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from miabench.checkpoints.base import (
    CheckpointError,
    CheckpointInfo,
    file_sha256,
    require_file,
    safe_load,
    strict_load,
    unwrap_state,
)
from miabench.utils.io import CorruptFileError, check_torch_archive, read_json

VICTIM_FOLDER = "miabench_victim"
LIGHTNING = "lightning"
#: the files of a miabench victim folder (as pipeline/train.py writes them)
WEIGHTS_FILE, META_FILE = "victim.pt", "victim.json"

Reader = Callable[[Any, Path], CheckpointInfo]


def _class_name(module: Any) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def read_victim_folder(module: Any, path: Path) -> CheckpointInfo:
    """Load a miabench victim folder (``victim.pt`` + ``victim.json``) into ``module``.

    Raises:
        CheckpointError: damaged files, another victim class, or other keys/shapes.
    """
    weights = path / WEIGHTS_FILE
    try:
        meta = read_json(path / META_FILE)
        check_torch_archive(weights)
    except (CorruptFileError, ValueError, FileNotFoundError) as err:
        raise CheckpointError(path, VICTIM_FOLDER, f"damaged or incomplete folder: {err}") from err
    target = ((meta.get("config") or {}).get("module") or {}).get("_target_")
    if target is not None and target != _class_name(module):
        raise CheckpointError(
            path,
            VICTIM_FOLDER,
            f"it holds a {target} victim, but the configured victim is {_class_name(module)}",
        )
    state = unwrap_state(safe_load(weights, VICTIM_FOLDER), weights, VICTIM_FOLDER)
    strict_load(module, state, weights, VICTIM_FOLDER)
    details = {
        "victim_class": _class_name(module),
        "source_victim_key": meta.get("key"),
        "source_epochs": meta.get("epochs"),
        "weights_file": WEIGHTS_FILE,
    }
    return CheckpointInfo(str(path), file_sha256(weights), VICTIM_FOLDER, details)


def read_lightning(module: Any, path: Path) -> CheckpointInfo:
    """Load a Lightning ``.ckpt`` of the configured victim class into ``module``.

    Raises:
        CheckpointError: not a Lightning checkpoint, hyper-parameters of another class, or
            other keys/shapes.
    """
    obj = safe_load(path, LIGHTNING)
    if not isinstance(obj, Mapping) or "pytorch-lightning_version" not in obj:
        keys = list(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            path, LIGHTNING, f"no 'pytorch-lightning_version' entry (top level: {keys})"
        )
    saved = dict(obj.get("hyper_parameters") or {})
    own = dict(getattr(module, "hparams", {}) or {})
    if saved and set(saved) != set(own):
        raise CheckpointError(
            path,
            LIGHTNING,
            f"its hyper-parameters {sorted(saved)} are not those of the configured "
            f"{_class_name(module)} ({sorted(own)}): a checkpoint of another victim class",
        )
    state = unwrap_state(obj, path, LIGHTNING)
    strict_load(module, state, path, LIGHTNING)
    differ = {
        k: {"file": _plain(saved[k]), "config": _plain(own[k])}
        for k in sorted(saved)
        if _plain(saved[k]) != _plain(own[k])
    }
    details = {
        "victim_class": _class_name(module),
        "epoch": obj.get("epoch"),
        "global_step": obj.get("global_step"),
        "lightning_version": obj.get("pytorch-lightning_version"),
        # training settings only; the imported weights are used as they are
        "hyper_parameters_differing": differ,
    }
    return CheckpointInfo(str(path), file_sha256(path), LIGHTNING, details)


def load_checkpoint(module: Any, path: str | os.PathLike, reader: Reader | None) -> CheckpointInfo:
    """Load ``path`` into the victim ``module`` in place, after a strict key and shape check.

    Args:
        module: the victim LightningModule, built from the config.
        path: a miabench victim folder, a Lightning ``.ckpt``, or a file in the layout of
            the victim family's authors.
        reader: the family's reader (``victim.checkpoint_reader``); None when the victim
            has none (only the generic layouts are then accepted).

    Returns:
        What was read (file, sha256, layout, details).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: naming the file, the layout expected and what is wrong.
    """
    path = require_file(path, "miabench victim folder, Lightning .ckpt or released")
    if path.is_dir():
        if (path / WEIGHTS_FILE).is_file():
            return read_victim_folder(module, path)
        if reader is None:
            raise CheckpointError(
                path, VICTIM_FOLDER, f"a folder without {WEIGHTS_FILE} and {META_FILE}"
            )
    elif path.suffix == ".ckpt":
        return read_lightning(module, path)
    if reader is None:
        raise CheckpointError(
            path,
            f"{VICTIM_FOLDER} or {LIGHTNING}",
            "this victim has no reader for released files (victim.checkpoint_reader is "
            "null): give a miabench victim folder or a Lightning .ckpt",
        )
    return reader(module, path)
