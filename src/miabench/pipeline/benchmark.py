"""The three stages chained, for the one-shot benchmark."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from hydra.utils import get_object
from omegaconf import DictConfig, open_dict

from miabench.pipeline.attack import run_attack
from miabench.pipeline.table import make_table
from miabench.pipeline.train import train_victim
from miabench.utils.io import atomic_write

log = logging.getLogger(__name__)


def run_benchmark(cfg: DictConfig) -> Path:
    """Train (or reuse) the victim, attack it, and write its table and ROC plots.

    The table holds this run's results next to the published rows; the ROC plots and
    per-sample scores are copied beside it so ``results/<table>/`` is self-contained.
    """
    victim = train_victim(cfg)
    # an attack group may name a stage of its own (attack=reference: reference models)
    stage = cfg.attack.get("_pipeline_")
    results = get_object(stage)(cfg, victim) if stage else run_attack(cfg, victim)
    if cfg.table.get("writer"):
        # A comparison table (e.g. defenses) joins every run of a multirun: each job
        # rewrites it from all results found so far, so the last job leaves it complete.
        md_path, _ = make_table(cfg)
        log.info("comparison table → %s", md_path)
        return md_path
    with open_dict(cfg):
        cfg.table.results = [str(results)]
    md_path, _ = make_table(cfg)
    out_dir = Path(cfg.table.out_dir)
    for name in ("roc_linear.png", "roc_loglog.png", "scores.csv", "results.json"):
        src = results.parent / name
        atomic_write(out_dir / name, lambda tmp, src=src: shutil.copyfile(src, tmp))
    log.info("benchmark table → %s", md_path)
    return md_path
