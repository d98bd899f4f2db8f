"""Hydra app: a self-contained HTML audit report. ``python -m miabench.report``.

``python -m miabench.report attack_dir=PATH`` reports one attack folder (its results.json
and scores.csv); ``python -m miabench.report table=NAME`` reports a table written by
``make_table``. ``report.out=FILE`` names the HTML file (default ``report.html`` beside the
results).
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

log = logging.getLogger("miabench.report")


@hydra.main(version_base="1.3", config_path="pkg://miabench.conf", config_name="report")
def main(cfg: DictConfig) -> str:
    """Write the configured report; returns its path."""
    # Imported here, not at the top: matplotlib and pandas take seconds to import, and
    # `--help` or a config error should not wait for them.
    from miabench.report.build import build_report
    from miabench.report.records import ReportError
    from miabench.report.table import build_table_report

    table, attack_dir = cfg.get("table"), cfg.get("attack_dir")
    if (table is None) == (attack_dir is None):
        log.error("give exactly one of attack_dir=PATH or table=NAME")
        sys.exit(1)
    command = " ".join(["python -m miabench.report", *HydraConfig.get().overrides.task])
    try:
        if attack_dir is not None:
            path = build_report(
                attack_dir,
                cfg.report.out,
                data_dir=cfg.report.data_dir,
                cache_dir=cfg.report.cache_dir,
                n_exposed=int(cfg.report.n_exposed),
                command=command,
            )
        else:
            path = build_table_report(table, cfg.report.out, command=command)
    except (ReportError, FileNotFoundError) as err:
        # bad input, not a crash: one line naming the file, no traceback
        log.error("%s", err)
        sys.exit(1)
    log.info("wrote %s", path)
    return str(path)


if __name__ == "__main__":
    main()
