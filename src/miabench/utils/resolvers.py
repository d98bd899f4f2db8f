"""OmegaConf resolvers the configs use; registered when miabench is imported."""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

#: Longest folder name kept verbatim (file systems allow 255 bytes per path component).
MAX_DIRNAME = 120


def safe_dirname(name: str) -> str:
    """A deterministic folder name for a run's overrides.

    Short override strings are kept as they are (readable, and the same overrides always
    give the same folder); long ones keep a readable prefix plus a hash of the whole string.
    No overrides gives ``default``.
    """
    name = name.replace("/", "_")
    if not name:
        return "default"
    if len(name) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: MAX_DIRNAME - 13]}-{digest}"


def register() -> None:
    """Register ``${mia_dirname:...}`` (idempotent)."""
    if not OmegaConf.has_resolver("mia_dirname"):
        OmegaConf.register_new_resolver("mia_dirname", safe_dirname)
