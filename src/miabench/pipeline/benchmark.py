"""The three stages chained, for the one-shot benchmark."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, open_dict

from miabench.pipeline.attack import run_attack
from miabench.pipeline.sweep import in_sweep, record_job
from miabench.pipeline.table import make_table
from miabench.pipeline.train import train_victim
from miabench.utils.io import atomic_write, read_json

log = logging.getLogger(__name__)

#: Files of one run copied beside its table, so ``results/<table>/`` is self-contained.
RUN_FILES = ("roc_linear.png", "roc_loglog.png", "scores.csv", "results.json")


def run_benchmark(cfg: DictConfig) -> Path:
    """Train (or reuse) the victim, attack it, and write its table and ROC plots.

    Alone, the job writes the table from its own results (next to the published rows) and
    copies its ROC plots and per-sample scores to ``<table.out_dir>/runs/<run>/``. Inside a
    multirun, it only records its results: :class:`~miabench.pipeline.sweep.TableCallback`
    writes one table from every job of the sweep when the sweep ends (seeds aggregated).
    Returns the table's Markdown path, or the job record's path inside a sweep.
    """
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
    with open_dict(cfg):
        # this run's table, as a sweep's table is its jobs' (a writer table too: the run's
        # experiment may not write where the table config's globs look)
        cfg.table.results = [str(results)]
    md_path = write_sweep_table(cfg, [results])
    log.info("benchmark table → %s", md_path)
    return md_path


def run_name(results: Path) -> str:
    """Readable name of a run: its attack folder without the hash (victim-data-defense-seed)."""
    return results.parent.name.rsplit("-", 1)[0]


def write_sweep_table(cfg: DictConfig, results: list[Path]) -> Path:
    """Write ``cfg.table`` (whose ``results`` name the runs) and copy each run's files.

    Tables with a writer of their own (defense comparison, MINT) take the runs as they are;
    the generic table also gets every run's ROC plots and scores under ``runs/<run>/``.
    """
    md_path, _ = make_table(cfg)
    if cfg.table.get("writer"):
        return md_path
    out_dir = Path(cfg.table.out_dir)
    for path in results:
        run = read_json(path)["run"]
        target = out_dir / "runs" / run_name(Path(path))
        for name in RUN_FILES:
            src = Path(path).parent / name
            if src.exists():
                atomic_write(target / name, lambda tmp, src=src: shutil.copyfile(src, tmp))
        log.info("run %s (seed %s) → %s", run.get("victim"), run.get("seed"), target)
    return md_path
