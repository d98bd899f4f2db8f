"""Config nodes as plain Python containers (for hashing, JSON and keyword arguments), and
the package's configs as a whole (their folder, a group's options, every experiment composed)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def to_container(cfg: Any) -> Any:
    """Resolve a config node to plain Python containers (for hashing and JSON)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def conf_dir() -> Path:
    """The folder of the package's configs (top-level ``conf/``, shipped as miabench.conf)."""
    import miabench.conf  # noqa: PLC0415

    return Path(miabench.conf.__file__).resolve().parent


def group_options(group: str) -> list[str]:
    """The options of config group ``group``, sorted (``embedded/pix2pix_edges2fashion`` for
    nested experiments); files starting with ``_`` are shared fragments, not options."""
    folder = conf_dir() / group
    return sorted(
        str(p.relative_to(folder).with_suffix(""))
        for p in folder.rglob("*.yaml")
        if not p.name.startswith("_")
    )


@functools.cache
def composed_experiments() -> dict[str, DictConfig]:
    """Every ``conf/experiment`` option composed as ``run_attack experiment=<name>`` composes
    it, with its ``hydra`` node (``hydra.runtime.choices`` says which victim, data and attack
    it pairs); read-only, composed once per process (about 0.1 s each).

    What the configs already say about which victim goes with which data and attacks is
    read here rather than kept in lists beside them (the prefetch list of ImageNet backbones,
    the contract tests' tiny data).
    """
    from hydra import compose, initialize_config_module  # noqa: PLC0415

    out = {}
    with initialize_config_module("miabench.conf", version_base="1.3"):
        for name in group_options("experiment"):
            cfg = compose("run_attack", [f"experiment={name}"], return_hydra_config=True)
            OmegaConf.set_readonly(cfg, True)
            out[name] = cfg
    return out
