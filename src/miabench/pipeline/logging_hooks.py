"""Send a finished attack's results to the configured loggers; quiet Lightning's ad tips.

``run_attack`` writes ``results.json``; :func:`log_results` also gives the composed config
(as hyperparameters) and every numeric result (attack AUCs and TPRs, utility, gap) to the
loggers of the ``logger`` group (CSV and/or Weights & Biases), under the attack folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: Where Lightning's rank-zero info messages (tips included) are logged.
_LIGHTNING_INFO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)


class DropAdvertisingTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing <product>" records, nothing else.

    Matched on the message's opening, which Lightning uses only for these: warnings and other
    info messages pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith("💡 Tip:")


_FILTER = DropAdvertisingTips()


def silence_lightning_tips() -> None:
    """Install :class:`DropAdvertisingTips` on Lightning's info loggers (idempotent)."""
    for name in _LIGHTNING_INFO_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def flat_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """Numeric leaves of a results.json as ``attack/<name>/<metric>``, ``utility/<role>/...``
    and ``gap/<metric>`` (lists such as confidence intervals become ``.../0``, ``.../1``)."""
    out: dict[str, float] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, bool):
            out[prefix] = float(node)
        elif isinstance(node, (int, float)):
            out[prefix] = float(node)
        elif isinstance(node, Mapping):
            for key, value in node.items():
                if key != "describe":  # attack settings: in the config already
                    walk(f"{prefix}/{key}", value)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(f"{prefix}/{i}", value)

    for section, prefix in (("attacks", "attack"), ("utility", "utility")):
        walk(prefix, results.get(section) or {})
    walk("gap", results.get("generalization_gap") or {})
    return out


def logger_destination(logger: Any) -> str | None:
    """Where a Lightning logger wrote: its ``log_dir`` (CSV), else its run's folder (wandb's
    ``experiment.dir``) or ``save_dir``; None when it names none (never the string "None")."""
    for where in (
        getattr(logger, "log_dir", None),
        getattr(getattr(logger, "_experiment", None), "dir", None),
        getattr(logger, "save_dir", None),
    ):
        if where:
            return str(where)
    return None


def log_results(cfg: DictConfig, results_path: str | Path) -> list[Any]:
    """Log the composed config and the numeric results of ``results_path`` to every logger
    of ``cfg.logger``, with ``save_dir`` the attack folder (results.json's folder).

    Returns:
        The loggers used (finalized).
    """
    from hydra.utils import instantiate  # noqa: PLC0415 - heavy (Lightning, wandb)

    results_path = Path(results_path)
    results = json.loads(results_path.read_text())
    metrics = flat_metrics(results)
    params = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "run": results.get("run", {}),
    }
    silence_lightning_tips()
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        logger = instantiate(spec, save_dir=str(results_path.parent))
        logger.log_hyperparams(params)
        logger.log_metrics(metrics, step=0)
        logger.save()
        logger.finalize("success")
        # Lightning's WandbLogger.finalize leaves the run open (the Trainer owns its lifetime);
        # here nothing else will log to it, so finish it: wandb then writes summary and config.
        finish = getattr(getattr(logger, "experiment", None), "finish", None)
        if callable(finish):
            finish()
        where = logger_destination(logger)
        if where:
            log.info("logger %s: %d attack/utility metrics → %s", name, len(metrics), where)
        else:
            log.info("logger %s: %d attack/utility metrics logged", name, len(metrics))
        loggers.append(logger)
    return loggers
