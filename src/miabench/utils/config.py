"""Config nodes as plain Python containers (for hashing, JSON and keyword arguments)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def to_container(cfg: Any) -> Any:
    """Resolve a config node to plain Python containers (for hashing and JSON)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg
