"""Recording one attack run: held-out metrics, the run's description and provenance, CSVs.

Shared by the attack stage (:mod:`miabench.pipeline.attack`), the reference-model stage and
rescoring, so a ``results.json`` says the same things whichever stage wrote it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

import miabench
from miabench.defenses.setting import DefenseSetting
from miabench.metrics.bootstrap import roc_intervals
from miabench.metrics.roc import evaluate_scores
from miabench.pipeline.seeds import SeedStreams
from miabench.pipeline.train import TrainedVictim
from miabench.utils.io import atomic_write
from miabench.utils.provenance import StageClock, environment, now_iso


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` to ``path`` atomically, with its checksum."""
    atomic_write(path, lambda p: frame.to_csv(p, index=False), checksum=True)


def held_out_metrics(
    cfg: DictConfig,
    score: np.ndarray,
    labels: np.ndarray,
    is_calibration: np.ndarray,
    test_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """One attack's metrics: the threshold chosen on the calibration half, AUC and TPRs on
    the test half (every row when there is no calibration half), and the test half's
    bootstrap intervals, by sample or by the test rows' ``test_groups``.

    The intervals are seeded by the run's seed, so a rerun gives the same ones. Shared by
    the attack stage and the reference-model stage (the target's metrics).
    """
    fprs, level = tuple(cfg.evaluation.fprs), float(cfg.evaluation.ci_level)
    test = ~is_calibration if is_calibration.any() else np.ones_like(is_calibration)
    # binomial intervals (accuracy, reached TPR) at the same level as the bootstrap ones
    metrics = evaluate_scores(score, labels, is_calibration, fprs=fprs, level=level)
    metrics.update(
        roc_intervals(
            score[test],
            labels[test],
            test_groups,
            fprs=fprs,
            n_boot=int(cfg.evaluation.bootstrap),
            level=level,
            seed=SeedStreams.of(cfg).bootstrap,
        )
    )
    return metrics


def provenance(
    victim: TrainedVictim, device: torch.device, clock: StageClock, started: str
) -> dict[str, Any]:
    """Commit, packages, overrides, device and stage times behind this results.json.

    The training stage's times come from ``victim.json`` (written when the victim was
    trained, possibly by an earlier process); the attack stage's from this process.
    """
    meta = victim.meta()
    # an imported victim (victim.checkpoint) was not trained: its stage is the import
    first = "import" if meta.get("imported") else "train"
    stages = {first: meta.get("timing"), **clock.stages}
    stages["attack"] = {"started": started, "finished": now_iso()}
    record = {
        **environment(device),
        "stages": stages,
        "train_environment": meta.get("environment"),
    }
    if meta.get("imported"):
        record["checkpoint"] = meta.get("checkpoint")  # path, sha256, layout, details
    return record


def victim_weights(meta: dict[str, Any]) -> str:
    """``trained`` or ``imported <layout> sha256:<first 12>``: where a victim's weights came
    from, as the run record and the tables say it."""
    if not meta.get("imported"):
        return "trained"
    checkpoint = meta.get("checkpoint") or {}
    return f"imported {checkpoint.get('layout')} sha256:{str(checkpoint.get('sha256'))[:12]}"


def describe_run(cfg: DictConfig, victim: TrainedVictim) -> dict[str, Any]:
    manifest = victim.datamodule.manifest
    meta = victim.meta()
    return {
        "victim": cfg.victim.name,
        "dataset": cfg.data.get("display_name", cfg.data.name),
        "data_name": cfg.data.name,
        "data_root": "embedded" if cfg.data.get("embedded") else str(cfg.data.root),
        "image_size": cfg.data.get("image_size"),
        "direction": cfg.data.get("direction"),
        "defense": DefenseSetting.of(cfg).name,
        "seed": cfg.seed,
        "seed_streams": SeedStreams.of(cfg).record(),
        "victim_key": victim.key["key"],
        "victim_dir": str(victim.directory),
        "victim_epochs": meta.get("epochs"),
        # trained here, or imported from victim.checkpoint (issue 28)
        "victim_weights": victim_weights(meta),
        # what the defense reported during training (e.g. DP-SGD's ε at δ), if anything
        "defense_report": meta.get("defense"),
        "manifest_sha256": victim.key["manifest_sha256"],
        "n_members": len(manifest.ids("member")),
        "n_nonmembers": len(manifest.ids("nonmember")),
        # "declared" (the dataset's published split, or split.members_list/nonmembers_list)
        # or "drawn" (a seeded draw of split.n_members/n_nonmembers)
        "membership": manifest.membership,
        "package_version": miabench.__version__,
        # how the calibration/test halves were drawn (by sample, or whole groups/identities)
        "calibration_by_group": bool(cfg.evaluation.get("calibration_by_group", False)),
    }
