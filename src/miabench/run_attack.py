"""Hydra app: attack a cached victim. ``python -m miabench.run_attack``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miabench.pipeline.logging_hooks import silence_lightning_tips
from miabench.utils.extras import check_launcher


@hydra.main(version_base="1.3", config_path="pkg://miabench.conf", config_name="run_attack")
def app(cfg: DictConfig) -> str:
    """Run every configured attack; returns the results.json path."""
    # Imported here, not at the top: torch, Lightning and the victims take seconds and
    # ~1 GB to import, and `--help` or a config error should not wait for them.
    from miabench.pipeline.attack import run_attack

    silence_lightning_tips()
    return str(run_attack(cfg))


def main() -> None:
    """Console entry point: a launcher's missing extra is named before Hydra composes."""
    check_launcher()
    app()


if __name__ == "__main__":
    main()
