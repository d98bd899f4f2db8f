"""Hydra app chaining the stages: train → attack → table (+ ROC plots) under results/.

``python -m miabench.benchmark`` runs the embedded default; any experiment works, e.g.
``python -m miabench.benchmark experiment=shafran2021/pix2pix_facades data.root=...``.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miabench.pipeline.logging_hooks import silence_lightning_tips
from miabench.utils.extras import check_launcher


@hydra.main(version_base="1.3", config_path="pkg://miabench.conf", config_name="benchmark")
def app(cfg: DictConfig) -> str:
    """Run the benchmark; returns the table's Markdown path."""
    # Imported here, not at the top: torch, Lightning and the victims take seconds and
    # ~1 GB to import, and `--help` or a config error should not wait for them.
    from miabench.pipeline.benchmark import run_benchmark

    silence_lightning_tips()
    return str(run_benchmark(cfg))


def main() -> None:
    """Console entry point: a launcher's missing extra is named before Hydra composes."""
    check_launcher()
    app()


if __name__ == "__main__":
    main()
