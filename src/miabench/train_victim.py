"""Hydra app: train a victim (or reuse the cached one). ``python -m miabench.train_victim``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miabench.pipeline.train import train_victim


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train_victim")
def main(cfg: DictConfig) -> str:
    """Train the configured victim; returns its cache folder."""
    return str(train_victim(cfg).directory)


if __name__ == "__main__":
    main()
