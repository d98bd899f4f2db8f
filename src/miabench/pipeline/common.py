"""What every stage needs to start: the data module with its split.

The device lives in :mod:`miabench.utils.device` (``select_device``), cache keys in :mod:`miabench.pipeline.keys`, code hashing in
:mod:`miabench.pipeline.code_hash`, config-to-container conversion in
:mod:`miabench.utils.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from miabench.pipeline.keys import split_key
from miabench.utils.config import to_container


def build_datamodule(cfg: DictConfig) -> Any:
    """Instantiate the data module with its manifest stored under the split's cache key.

    ``split.population`` (reference models, see ``data.datamodule``) is passed when set,
    and so are ``split.members_list``/``split.nonmembers_list`` (declared membership).
    """
    manifest = Path(cfg.paths.cache_dir) / "splits" / f"{cfg.data.name}-{split_key(cfg)}.csv"
    population = cfg.split.get("population")
    extra = {"population": to_container(population)} if population is not None else {}
    if cfg.split.get("members_list") is not None or cfg.split.get("nonmembers_list") is not None:
        # declared membership (data/declared.py): list lines are read against data.root
        extra.update(
            members_list=cfg.split.get("members_list"),
            nonmembers_list=cfg.split.get("nonmembers_list"),
            root=cfg.data.root,
        )
    return instantiate(cfg.data.datamodule, manifest_path=str(manifest), **extra)
