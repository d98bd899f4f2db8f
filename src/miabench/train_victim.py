"""Hydra app: train a victim (or reuse the cached one). ``python -m miabench.train_victim``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miabench.pipeline.logging_hooks import silence_lightning_tips
from miabench.utils.extras import check_launcher


@hydra.main(version_base="1.3", config_path="pkg://miabench.conf", config_name="train_victim")
def app(cfg: DictConfig) -> str:
    """Train the configured victim; returns its cache folder."""
    # Imported here, not at the top: torch, Lightning and the victims take seconds and
    # ~1 GB to import, and `--help` or a config error should not wait for them.
    from miabench.pipeline.train import train_victim

    silence_lightning_tips()
    return str(train_victim(cfg).directory)


def main() -> None:
    """Console entry point: a launcher's missing extra is named before Hydra composes."""
    check_launcher()
    app()


if __name__ == "__main__":
    main()
