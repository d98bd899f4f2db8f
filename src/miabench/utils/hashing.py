"""Stable content hashes used as cache keys and for duplicate detection."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def _canonical(obj: Any) -> Any:
    # `dropout=0` and `dropout: 0.0` configure the same thing; hash them alike.
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash a JSON-serialisable object independently of key order and of 1 vs 1.0.

    Args:
        obj: nested dicts/lists/scalars (e.g. ``OmegaConf.to_container(cfg, resolve=True)``).
        length: number of hex digits kept.
    """
    blob = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def sha256_array(array: np.ndarray) -> str:
    """SHA-256 of an array's decoded content (shape, dtype and bytes).

    Hashing decoded pixels, not file bytes, finds the same image saved twice with
    different encoders or metadata.
    """
    array = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{array.shape}|{array.dtype}|".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in chunks (recorded so results name the exact
    checkpoint a backbone was loaded from)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
