"""Stage 2: score members and non-members of a cached victim with each attack."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

import miabench
from miabench.attacks.base import Attack
from miabench.metrics.roc import calibration_split, evaluate_scores
from miabench.metrics.utility import summarize
from miabench.pipeline.common import resolve_device, to_container
from miabench.pipeline.train import TrainedVictim, locate_victim
from miabench.results.plots import plot_roc
from miabench.utils.hashing import stable_hash
from miabench.utils.io import atomic_write, atomic_write_json
from miabench.victims.base import Victim

log = logging.getLogger(__name__)

ROLES = {"member": 1, "nonmember": 0}


def attack_dir(cfg: DictConfig, victim: TrainedVictim) -> Path:
    """Output folder of one victim's attacks: readable prefix + hash of what shaped them."""
    key = stable_hash(
        {
            "victim": victim.key["key"],
            "attack": to_container(cfg.attack),
            "evaluation": {k: v for k, v in to_container(cfg.evaluation).items() if k != "device"},
        }
    )
    name = f"{cfg.victim.name}-{cfg.data.name}-{cfg.defense.name}-s{cfg.seed}-{key}"
    return Path(cfg.paths.output_dir) / "attacks" / name


def _loaders(victim: TrainedVictim) -> dict[str, Any]:
    dm = victim.datamodule
    return {"member": dm.member_dataloader(), "nonmember": dm.nonmember_dataloader()}


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda p: frame.to_csv(p, index=False))


def _collect(
    model: Victim, victim: TrainedVictim, device: torch.device, fn: Any, desc: str
) -> pd.DataFrame:
    """Run ``fn(signals) -> {column: (B,) tensor}`` over members and non-members."""
    rows: list[pd.DataFrame] = []
    for role, loader in _loaders(victim).items():
        for signals in model.iter_signals(loader, device=device, desc=f"{desc} [{role}]"):
            columns = {k: v.detach().float().cpu().numpy() for k, v in fn(signals).items()}
            frame = pd.DataFrame({"sample_id": signals["sample_id"], "role": role, **columns})
            rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def _attack_scores(
    name: str, attack: Attack, model: Victim, victim: TrainedVictim, device: torch.device, out: Path
) -> pd.DataFrame:
    """Scores of one attack, read back from disk when an earlier run finished them."""
    path = out / f"scores_{name}.csv"
    if path.exists():
        log.info("reusing scores of %s from %s", name, path)
        return pd.read_csv(path)
    attack.check_signals(model.provides)
    attack.setup(device)
    frame = _collect(model, victim, device, attack.score, desc=name)
    _write_csv(path, frame)
    return frame


def run_attack(cfg: DictConfig, victim: TrainedVictim | None = None) -> Path:
    """Attack the cached victim of ``cfg`` with every attack in ``cfg.attack``.

    Writes ``scores.csv`` (per sample: id, role, label, calibration/test, every attack's
    score and diagnostics), ``results.json`` and ROC plots to the attack folder, and returns
    the path of ``results.json``. Finished attacks are not recomputed on a rerun.
    """
    victim = victim or locate_victim(cfg)
    if not victim.weights.exists():
        raise FileNotFoundError(
            f"no trained victim at {victim.directory} for this configuration; run "
            "`python -m miabench.train_victim` with the same overrides first"
        )
    out = attack_dir(cfg, victim)
    results_path = out / "results.json"
    if results_path.exists():
        log.info("attack results exist: %s", results_path)
        return results_path
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.evaluation.device)
    model = victim.load(cfg).to(device)

    utility_path = out / "utility.csv"
    if utility_path.exists():
        utility = pd.read_csv(utility_path)
    else:
        utility = _collect(model, victim, device, model.utility, desc="utility")
        _write_csv(utility_path, utility)

    table = utility[["sample_id", "role"]].copy()
    table["label"] = table["role"].map(ROLES)
    is_cal = calibration_split(
        table["label"].to_numpy(), cfg.evaluation.calibration_fraction, cfg.seed
    )
    table["split"] = np.where(is_cal, "calibration", "test")

    attacks_out: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, spec in cfg.attack.items():
        if spec is None or "_target_" not in spec:
            # e.g. an experiment tunes membership_error while `attack=reconstruction` selects
            # only the other one: the leftover settings name no attack to run.
            log.warning("attack.%s has no _target_ (not selected); skipped", name)
            continue
        attack: Attack = instantiate(spec, name=name)
        scores = _attack_scores(name, attack, model, victim, device, out)
        scores = scores.drop(columns="role").add_prefix(f"{name}.")
        scores = scores.rename(columns={f"{name}.sample_id": "sample_id"})
        table = table.merge(scores, on="sample_id", how="left", validate="one_to_one")
        score = table[f"{name}.score"].to_numpy()
        metrics = evaluate_scores(
            score, table["label"].to_numpy(), is_cal, fprs=tuple(cfg.evaluation.fprs)
        )
        metrics["describe"] = attack.describe()
        attacks_out[name] = metrics
        test = ~is_cal if is_cal.any() else np.ones_like(is_cal)
        curves[name] = (score[test], table["label"].to_numpy()[test])
        log.info("%s: AUC %.4f", name, metrics["auc"])

    _write_csv(out / "scores.csv", table)
    plot_roc(curves, out, title=f"{cfg.victim.name} on {cfg.data.name} ({cfg.defense.name})")
    util = {
        role: summarize(
            {c: utility.loc[utility.role == role, c].to_numpy() for c in utility.columns[2:]}
        )
        for role in ROLES
    }
    results = {
        "run": _describe_run(cfg, victim),
        "utility": util,
        "generalization_gap": {
            metric: util["nonmember"][metric] - util["member"][metric] for metric in util["member"]
        },
        "attacks": attacks_out,
    }
    atomic_write_json(results_path, results)
    log.info("results → %s", results_path)
    return results_path


def _describe_run(cfg: DictConfig, victim: TrainedVictim) -> dict[str, Any]:
    manifest = victim.datamodule.manifest
    meta = victim.meta()
    return {
        "victim": cfg.victim.name,
        "dataset": cfg.data.get("display_name", cfg.data.name),
        "data_name": cfg.data.name,
        "data_root": "embedded" if cfg.data.get("embedded") else str(cfg.data.root),
        "image_size": cfg.data.image_size,
        "direction": cfg.data.get("direction"),
        "defense": cfg.defense.name,
        "seed": cfg.seed,
        "victim_key": victim.key["key"],
        "victim_dir": str(victim.directory),
        "victim_epochs": meta.get("epochs"),
        "manifest_sha256": victim.key["manifest_sha256"],
        "n_members": len(manifest.ids("member")),
        "n_nonmembers": len(manifest.ids("nonmember")),
        "package_version": miabench.__version__,
    }
