"""The three stages chained, for the one-shot benchmark."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from miabench.pipeline.attack import run_attack
from miabench.pipeline.sweep import in_sweep, record_job
from miabench.pipeline.table import write_sweep_table
from miabench.pipeline.train import train_victim

log = logging.getLogger(__name__)


def run_benchmark(cfg: DictConfig) -> Path:
    """Train (or reuse) the victim, attack it, and write its table and ROC plots.

    Alone, the job copies its run record (results, scores, ROC plots) to
    ``<table.out_dir>/runs/<run>/`` and writes the table from the records there; the table
    goes to ``results/`` only when the job is the table's documented command
    (:func:`~miabench.pipeline.table.route_table`), else under
    ``${paths.output_dir}/tables/``. Inside a multirun, it only records its results:
    :class:`~miabench.pipeline.sweep.TableCallback` writes one table from every job of the
    sweep when the sweep ends (seeds aggregated).
    Returns the table's Markdown path, or the job record's path inside a sweep.

    Raises:
        ValueError: the configuration names no table (an experiment without one).
    """
    if cfg.get("table") is None:
        raise ValueError(
            "the benchmark writes a table, and this configuration names none: pass "
            "table=<name> (conf/table/) or an experiment that names its own"
        )
    log.info("stage 1/3: train (or reuse) the victim")
    victim = train_victim(cfg)
    log.info("stage 2/3: attack it")
    # (an attack group may name a stage of its own: attack=reference, reference models)
    results = run_attack(cfg, victim)
    if in_sweep():
        from hydra.core.hydra_config import HydraConfig

        record = record_job(results, HydraConfig.get().runtime.output_dir)
        log.info("stage 3/3: deferred to the end of the sweep (job record %s)", record)
        return record
    log.info("stage 3/3: table")
    md_path = write_sweep_table(cfg, [results], task_overrides())
    log.info("benchmark table → %s", md_path)
    return md_path


def task_overrides() -> list[str]:
    """This Hydra job's command-line overrides (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)
