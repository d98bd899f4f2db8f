"""Hydra app: tables of results next to published numbers. ``python -m miabench.make_table``.

``python -m miabench.make_table table=X`` rebuilds table X from the run records committed
under ``<out_dir>/runs/`` (after copying in any finished run its ``table.sources`` match);
``table.sources=[]`` rebuilds from the records alone.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from miabench.utils.extras import check_launcher

log = logging.getLogger("miabench.make_table")


@hydra.main(version_base="1.3", config_path="pkg://miabench.conf", config_name="make_table")
def app(cfg: DictConfig) -> str:
    """Write the configured table; returns the Markdown path."""
    # Imported here, not at the top: torch, Lightning and the victims take seconds and
    # ~1 GB to import, and `--help` or a config error should not wait for them.
    from miabench.pipeline.table import NoRunRecords, rebuild_table

    try:
        return str(rebuild_table(cfg)[0])
    except NoRunRecords as err:
        # an expected state (no runs made yet), not a crash: one line, no traceback
        log.error("%s", err)
        sys.exit(1)


def main() -> None:
    """Console entry point: a launcher's missing extra is named before Hydra composes."""
    check_launcher()
    app()


if __name__ == "__main__":
    main()
