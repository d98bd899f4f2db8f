"""Reference-model attacks: a target and M reference victims on one population, attacked.

``attack=reference`` with ``reference.n_models=M`` runs, top to bottom:

1. **Models**: model ``k`` (0 = the target, 1..M the references) is the same config with
   ``split.population.model=k``: an ordinary cached victim trained on column ``k`` of the
   population's membership matrix (``data/population.py: Population``), so resume, sweeps
   and SLURM apply to it unchanged. Missing models are trained here when
   ``reference.train``, else refused with the command that trains them
   (``pipeline/population.py``).
2. **Signals**: one pass of each model over the population, cached per model
   (``pipeline/signals.py``), stacked as samples x models arrays.
3. **Attacks**: every ``attack.<name>`` reads a view of the signals and scores the target
   against the references (LiRA, RMIA, dense LiRA from :mod:`miabench.attacks.reference`, and
   the reference-free error on the same samples).
4. **Metrics**: the target's members vs non-members (threshold on a calibration half, as
   ``run_attack``), every model in turn as the target (leave-one-out, N x K evaluations,
   what TPR at 0.1 % FPR needs), and attack strength against the number of references.
5. **Outputs**: ``results.json`` (``run_attack``'s schema plus ``leave_one_out``,
   ``strength_vs_references`` and ``reference``), ``scores.csv``,
   ``scores_leave_one_out.csv``, log-log ROC plots and the strength plot.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from miabench.attacks.reference.evaluation import reference_subsets
from miabench.data.population import Population
from miabench.defenses.setting import DefenseSetting
from miabench.metrics.calibration import calibration_split
from miabench.metrics.clustered import clustered_roc_intervals
from miabench.metrics.roc import evaluate_scores, tpr_key
from miabench.pipeline.code_hash import attack_code_version
from miabench.pipeline.population import PopulationModels, cost, locate_models
from miabench.pipeline.record import describe_run, held_out_metrics, provenance, write_csv
from miabench.pipeline.run_id import RunId
from miabench.pipeline.seeds import SeedStreams
from miabench.pipeline.signals import compute_signals, signal_key, stack_signals
from miabench.pipeline.train import TrainedVictim
from miabench.results.plots import plot_roc
from miabench.results.reference_table import plot_strength
from miabench.utils.config import to_container
from miabench.utils.device import select_device
from miabench.utils.hashing import stable_hash
from miabench.utils.io import atomic_write_json, verified_exists
from miabench.utils.provenance import StageClock, now_iso

log = logging.getLogger(__name__)

#: an attack's score function: (target, reference, membership) -> (N,) scores
ScoreFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def reference_free(target: np.ndarray, reference: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """The target's own signal as the score: a reference-free attack on the same samples.

    With the ``error`` view (minus the reconstruction error or loss) this is the
    reconstruction attack; the references are ignored.
    """
    return np.asarray(target, dtype=np.float64)


# --------------------------------------------------------------------------- models


#: an attack's ``z``: which rows a population-based attack (RMIA) compares each sample with
Z_CHOICES = ("target_nonmembers", "all")


@dataclass
class AttackSpec:
    """One configured attack: which view of the signals it reads and its score function.

    ``z`` is set for a score function with a ``population`` argument (RMIA): with
    ``"target_nonmembers"`` (the default, as the RMIA authors draw z: data the target did not
    train on) each model as the target compares its samples with the samples it did not train
    on; ``"all"`` (a departure, the project's former default) with every population row,
    members of the target included.
    """

    name: str
    view: str
    score: ScoreFn
    config: dict[str, Any]
    z: str | None = None


def _takes_population(score: Callable[..., Any]) -> bool:
    try:
        return "population" in inspect.signature(score).parameters
    except (TypeError, ValueError):  # a callable without a signature: no population
        return False


def _attacks(cfg: DictConfig) -> list[AttackSpec]:
    specs = []
    for name, spec in cfg.attack.items():
        if not isinstance(spec, DictConfig) or "score" not in spec:
            continue  # `_pipeline_`, or a leftover of another attack group
        score = instantiate(spec.score)
        z = spec.get("z", "target_nonmembers") if _takes_population(score) else None
        if z is not None and z not in Z_CHOICES:
            raise ValueError(f"attack.{name}.z must be one of {Z_CHOICES}, got {z!r}")
        specs.append(AttackSpec(str(name), spec.view, score, to_container(spec), z))
    if not specs:
        raise ValueError("attack=reference configures no attack (entries with view and score)")
    return specs


def _views(cfg: DictConfig, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every configured view of the stacked signals whose signal was computed."""
    views = {}
    for name, spec in cfg.reference.signals.views.items():
        if spec.signal in values:
            views[str(name)] = np.asarray(instantiate(spec.transform)(values[spec.signal]))
    return views


def _pairs_metrics(
    scores: np.ndarray,
    labels: np.ndarray,
    fprs: tuple[float, ...],
    evaluation: Any = None,
    seed: int = 0,
) -> dict:
    """ROC metrics over every (sample, model) pair; no threshold is fitted (none to fit).

    With ``evaluation`` (the run's evaluation block), also their bootstrap intervals,
    resampling whole samples (all of a sample's pairs), since a sample's pairs share it.
    """
    flat, truth = scores.reshape(-1), labels.reshape(-1).astype(int)
    metrics = evaluate_scores(flat, truth, np.zeros(flat.shape, dtype=bool), fprs=fprs)
    metrics.update(n_pairs=int(flat.size), n_member_pairs=int(truth.sum()))
    if evaluation is not None:
        metrics.update(
            clustered_roc_intervals(
                scores,
                labels,
                fprs=fprs,
                n_boot=int(evaluation.bootstrap),
                level=float(evaluation.ci_level),
                seed=seed,
            )
        )
    return metrics


def as_targets(
    score: ScoreFn,
    stats: np.ndarray,
    membership: np.ndarray,
    references: list[np.ndarray],
    z: str | None = None,
) -> np.ndarray:
    """Every model in turn as the target, scored against its own references.

    Like :func:`miabench.attacks.reference.evaluation.leave_one_out`, but each model ``k`` uses
    ``references[k]`` (all other models but its pair partner, whose membership is the
    complement of ``k``'s: :meth:`~miabench.data.population.Population.references_of`).

    Args:
        score: ``(target, references, membership) -> (N,)`` scores.
        stats: (N, K) or (N, P, K), models on the last axis.
        membership: (N, K) bool.
        references: per model, the columns of its references.
        z: ``"target_nonmembers"``: ``score`` also gets ``population=~membership[:, k]``, the
            samples model k did not train on (RMIA's z, as its authors draw it); ``"all"`` or
            None: no population (the score function's default, every row).

    Returns:
        (N, K) scores; column k is model k's attack, ``membership[:, k]`` its truth.
    """
    scores = np.empty(membership.shape)
    for k, refs in enumerate(references):
        extra = {"population": ~membership[:, k]} if z == "target_nonmembers" else {}
        scores[:, k] = score(stats[..., k], stats[..., refs], membership[:, refs], **extra)
    return scores


def _strength(
    attack: AttackSpec,
    stats: np.ndarray,
    membership: np.ndarray,
    references: list[np.ndarray],
    is_cal: np.ndarray,
    sizes: list[int],
    draws: int,
    seed: int,
    fprs: tuple[float, ...],
) -> list[dict[str, Any]]:
    """Metrics of ``attack`` with fewer references, averaged over seeded subsets.

    For every size and draw each model in turn is the target, scored against that many of
    its references (draw ``d`` of :func:`reference_subsets` over its references; a model
    with fewer references than the size uses all of them), and the metrics are taken over
    all (sample, model) pairs (``pooled``) and for model 0 on the test half (``target``).
    """
    points = []
    for size in sizes:
        pooled, target = [], []
        choices = [
            reference_subsets(len(refs), [min(size, len(refs))], draws, seed)[min(size, len(refs))]
            for refs in references
        ]
        n_draws = max(len(c) for c in choices)
        point: dict[str, Any] = {"n_references": int(size), "n_subsets": n_draws}
        try:
            for d in range(n_draws):
                subset = [refs[c[d % len(c)]] for refs, c in zip(references, choices, strict=True)]
                scores = as_targets(attack.score, stats, membership, subset, attack.z)
                pooled.append(_pairs_metrics(scores, membership, fprs))
                target.append(evaluate_scores(scores[:, 0], membership[:, 0], is_cal, fprs=fprs))
        except ValueError as err:
            # an attack that cannot run with this few references (RMIA a=tune needs 2): the
            # point says why and the curve starts at the next size
            log.info("%s with %d reference(s): %s", attack.name, size, err)
            points.append({**point, "n_subsets": 0, "note": str(err)})
            continue
        for where, runs in (("pooled", pooled), ("target", target)):
            for metric in ("auc", *(tpr_key(f) for f in fprs)):
                # a TPR at an FPR too low for the rows' non-members may be None (unresolved)
                values = np.array([r[metric] for r in runs if r.get(metric) is not None])
                resolved = values.size > 0
                point[f"{where}_{metric}_mean"] = float(values.mean()) if resolved else None
                point[f"{where}_{metric}_std"] = float(values.std()) if resolved else None
        points.append(point)
    return points


# --------------------------------------------------------------------------- outputs


def reference_dir(cfg: DictConfig, models: PopulationModels, signal_keys: list[str]) -> Path:
    """Attack folder of one population: readable prefix + hash of everything that shaped it."""
    reference = {k: v for k, v in to_container(cfg.reference).items() if k != "train"}
    parts = {
        "victims": [v.key["key"] for v in models.victims],
        "population": models.population.sha256(),
        "signals": signal_keys,
        "reference": reference,
        "attack": to_container(cfg.attack),
        "evaluation": {k: v for k, v in to_container(cfg.evaluation).items() if k != "device"},
        # the attacks', metrics' and this stage's code: a change never returns old scores
        "code": attack_code_version(cfg, ("miabench.pipeline.reference",)),
    }
    run = RunId.of(cfg, stable_hash(parts), prefix="reference", n_models=cfg.reference.n_models)
    return Path(cfg.paths.output_dir) / "attacks" / str(run)


def _run_block(
    cfg: DictConfig, models: PopulationModels, device: Any, clock: StageClock, started: str
) -> dict[str, Any]:
    """The target's run description and provenance, as ordinary attack results have them."""
    target = models.victims[0]
    return {
        **describe_run(cfg, target),
        "provenance": provenance(target, device, clock, started),
    }


def _reference_block(
    cfg: DictConfig, models: PopulationModels, paths: list[Path]
) -> dict[str, Any]:
    population = models.population
    return {
        "n_models": int(cfg.reference.n_models),
        "pkeep": float(cfg.reference.pkeep),
        "seed": int(cfg.reference.seed),
        "knowledge": cfg.reference.knowledge,
        "seeds": cfg.reference.seeds,
        "recipe": to_container(cfg.reference.recipe),
        "population_size": len(population.records),
        "pairs": [[k, j] for k, j in enumerate(population.partners()) if k < j],
        "population_sha256": population.sha256(),
        "population_file": str(models.victims[0].datamodule.population_path),
        "models": [
            {
                "model": k,
                "role": "target" if k == 0 else "reference",
                "victim_key": v.key["key"],
                "victim_dir": str(v.directory),
                "n_members": int(population.matrix[:, k].sum()),
                "epochs": v.meta().get("epochs"),
                "signals": str(paths[k]),
                "training": cost(v),
            }
            for k, v in enumerate(models.victims)
        ],
    }


# --------------------------------------------------------------------------- the stage


def run_reference_attack(cfg: DictConfig, victim: TrainedVictim | None = None) -> Path:
    """Attack the target of ``cfg`` with reference-model attacks; return results.json.

    Four steps, each logged: the population's models (trained or found), their signals (one
    cached pass per model), every attack on the target and leave-one-out on every model,
    and the write of tables, plots and ``results.json``.

    Args:
        cfg: a config with ``reference.n_models > 0`` and ``attack=reference``.
        victim: the target, when the caller has it (the benchmark trained it already).
    """
    clock, started = StageClock(), now_iso()
    log.info("[1/4] population: the target and %s reference models", cfg.reference.n_models)
    models = locate_models(cfg, victim)
    device = select_device(cfg)
    log.info("[2/4] signals of every model (one pass each, cached)")
    with clock.stage("signals"):
        paths = [
            compute_signals(c, v, device)
            for c, v in zip(models.configs, models.victims, strict=True)
        ]
    keys = [signal_key(c, v)["key"] for c, v in zip(models.configs, models.victims, strict=True)]
    out = reference_dir(cfg, models, keys)
    results_path = out / "results.json"
    if verified_exists(results_path):
        log.info("reference attack results exist: %s", results_path)
        return results_path
    out.mkdir(parents=True, exist_ok=True)
    models.population.to_csv(out / "population.csv")

    log.info("[3/4] attacks: the target's test half and leave-one-out over every model")
    stacked = stack_signals(paths, models.population.sample_ids)
    scored = _score_attacks(cfg, models.population, stacked.values)

    log.info("[4/4] results → %s", results_path)
    write_csv(out / "scores.csv", scored.table)
    write_csv(out / "scores_leave_one_out.csv", scored.loo_table)
    n_refs = int(cfg.reference.n_models)
    title = f"{cfg.victim.name} on {cfg.data.name} ({DefenseSetting.of(cfg).name}), {n_refs} refs"
    plot_roc(scored.curves, out, title=f"{title}\ntarget, test half")
    plot_roc(scored.loo_curves, out / "leave_one_out", title=f"{title}\nleave-one-out, all pairs")
    plot_strength(scored.strength, out / "strength_vs_references.png", title=title)
    results = {
        "run": {
            **_run_block(cfg, models, device, clock, started),
            "reference": _reference_block(cfg, models, paths),
        },
        "attacks": scored.attacks,
        "leave_one_out": scored.leave_one_out,
        "strength_vs_references": scored.strength,
    }
    if scored.skipped:
        results["skipped_attacks"] = scored.skipped
    atomic_write_json(results_path, results, checksum=True)
    return results_path


@dataclass
class ReferenceScores:
    """What the reference attacks produced on one population.

    Attributes:
        table: per target sample: ``sample_id``, ``label``, ``split``, one score per attack.
        loo_table: per (sample, model) pair: ``sample_id``, ``model``, ``label``, scores.
        attacks: attack → the target's metrics on its test half.
        leave_one_out: attack → metrics over all (sample, model) pairs.
        strength: attack → metrics against the number of references.
        skipped: attack → why it could not run on these signals or references.
        curves: attack → the target's test half ``(scores, labels)``.
        loo_curves: attack → all pairs' ``(scores, labels)``.
    """

    table: pd.DataFrame
    loo_table: pd.DataFrame
    attacks: dict[str, Any] = field(default_factory=dict)
    leave_one_out: dict[str, Any] = field(default_factory=dict)
    strength: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    loo_curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _score_attacks(
    cfg: DictConfig, population: Population, signals: dict[str, np.ndarray]
) -> ReferenceScores:
    """Every configured reference attack on the target (model 0) and leave-one-out.

    ``signals``: view name → samples x models array of the stacked per-model signals.
    """
    views = _views(cfg, signals)
    membership = population.matrix
    references = [population.references_of(k) for k in range(population.n_models)]
    labels = membership[:, 0].astype(int)
    is_cal = calibration_split(
        labels, cfg.evaluation.calibration_fraction, SeedStreams.of(cfg).halves
    )
    test = ~is_cal if is_cal.any() else np.ones_like(is_cal)
    fprs = tuple(cfg.evaluation.fprs)
    n_refs = int(cfg.reference.n_models)
    sizes = sorted({s for s in cfg.reference.strength.n_references if s <= n_refs} | {n_refs})

    table = pd.DataFrame({"sample_id": population.sample_ids, "label": labels})
    table["split"] = np.where(is_cal, "calibration", "test")
    loo_table = pd.DataFrame(
        {
            "sample_id": np.repeat(population.sample_ids, population.n_models),
            "model": np.tile(np.arange(population.n_models), len(population.records)),
            "label": membership.reshape(-1).astype(int),
        }
    )
    scored = ReferenceScores(table=table, loo_table=loo_table)
    for attack in _attacks(cfg):
        if attack.view not in views:
            scored.skipped[attack.name] = (
                f"view {attack.view!r} not available from the signals "
                f"{sorted(signals)} (reference.signals.views)"
            )
            log.warning("attack %s skipped: %s", attack.name, scored.skipped[attack.name])
            continue
        stats = views[attack.view]
        start = time.perf_counter()
        try:
            loo = as_targets(attack.score, stats, membership, references, attack.z)
        except ValueError as err:
            # e.g. RMIA a=tune with a single reference per model: say so and go on
            scored.skipped[attack.name] = f"cannot run with these references: {err}"
            log.warning("attack %s skipped: %s", attack.name, scored.skipped[attack.name])
            continue
        seconds = time.perf_counter() - start
        score = loo[:, 0]  # model 0 against models 1..M: the target's attack
        metrics = held_out_metrics(cfg, score, labels, is_cal)  # the target's test half
        metrics["describe"] = {**attack.config, "name": attack.name}
        scored.attacks[attack.name] = metrics
        scored.leave_one_out[attack.name] = {
            **_pairs_metrics(loo, membership, fprs, cfg.evaluation, SeedStreams.of(cfg).bootstrap),
            "seconds": seconds,
        }
        scored.strength[attack.name] = _strength(
            attack,
            stats,
            membership,
            references,
            is_cal,
            sizes,
            int(cfg.reference.strength.subsets),
            SeedStreams.of(cfg).strength,
            fprs,
        )
        scored.table[f"{attack.name}.score"] = score
        scored.loo_table[f"{attack.name}.score"] = loo.reshape(-1)
        scored.curves[attack.name] = (score[test], labels[test])
        scored.loo_curves[attack.name] = (loo.reshape(-1), membership.reshape(-1).astype(int))
        log.info(
            "%s: target AUC %.4f, leave-one-out AUC %.4f",
            attack.name,
            metrics["auc"],
            scored.leave_one_out[attack.name]["auc"],
        )
    return scored
