"""The privacy–utility table's strongest-attack columns, from reference-model runs.

Per defense, the best reference attack (LiRA/RMIA, chosen by leave-one-out TPR at 1 % FPR,
then AUC) beside the reference-free attack of the same run, on the same pairs, and the
paired difference of the two (whole samples resampled with all their pairs). The best attack
is chosen on one half of the samples (:func:`selection_half`) and measured on the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miabench.metrics.bootstrap import Estimate
from miabench.metrics.clustered import (
    clustered_paired_roc,
    clustered_roc_intervals,
)
from miabench.metrics.roc import ci_key, observable, roc_metrics, unobservable_note
from miabench.metrics.seeds import P_VALUE_REPLICATES, SeedEstimate
from miabench.results.estimates import (
    TABLE_SEED,
    estimate_columns,
    fpr_of,
    paired_columns,
    recorded_estimate,
)
from miabench.results.reference_table import newest_per_setting
from miabench.results.runs import read_run_csv

#: the score function of a reference run's reference-free attack (the target's own signal)
REFERENCE_FREE = "miabench.pipeline.reference.reference_free"


def _is_reference_free(metrics: Mapping[str, Any]) -> bool:
    score = (metrics.get("describe") or {}).get("score") or {}
    return score.get("_target_") == REFERENCE_FREE


def selection_half(sample_ids: Sequence[Any]) -> np.ndarray:
    """Which samples choose the best reference attack (True) and which measure it (False).

    A sample belongs to the selection half when the first byte of the SHA-256 of its id is
    even: deterministic, the same on every machine and for every defense, and independent
    of membership and of the scores.
    """
    return np.asarray(
        [hashlib.sha256(str(i).encode()).digest()[0] % 2 == 0 for i in sample_ids], dtype=bool
    )


def _strength(scores: np.ndarray, labels: np.ndarray, tpr_key: str) -> tuple[float, float]:
    found = roc_metrics(scores.reshape(-1), labels.reshape(-1), (fpr_of(tpr_key),))
    return float(found[tpr_key]), float(found["auc"])


def _strongest_of(
    matrices: Mapping[str, np.ndarray], labels: np.ndarray, attacks: Iterable[str], tpr_key: str
) -> str | None:
    """The attack of ``attacks`` with the highest pooled TPR (then AUC) on ``labels``' pairs."""
    found = [a for a in attacks if a in matrices]
    return max(found, key=lambda a: _strength(matrices[a], labels, tpr_key)) if found else None


def _pooled(
    scores: np.ndarray, labels: np.ndarray, metric: str, n_boot: int, level: float
) -> Estimate:
    """A metric pooled over a samples × models matrix, samples and models resampled together.

    A TPR is reported only where the distinct non-member samples resolve its FPR (a
    sample's pairs share it: they are not independent non-members), as
    :func:`~miabench.metrics.clustered.clustered_roc_intervals` counts them.
    """
    fpr = fpr_of(metric)
    fprs = () if fpr is None else (fpr,)
    intervals = clustered_roc_intervals(
        scores, labels, fprs=fprs, n_boot=n_boot, level=level, seed=TABLE_SEED
    )
    n_nonmembers = int((labels == 0).any(axis=1).sum())
    if fpr is not None and not observable(fpr, n_nonmembers):
        note = unobservable_note(fpr, n_nonmembers, unit="distinct non-member samples")
        return Estimate(None, None, None, note=note)
    value = roc_metrics(scores.reshape(-1), labels.reshape(-1), fprs)[metric]
    low, high = intervals[ci_key(metric, level)] or (None, None)
    return Estimate(float(value), low, high)


def _clustered_p(
    a: np.ndarray, b: np.ndarray, labels: np.ndarray, metric: str, n_boot: int
) -> float | None:
    """Two-sided bootstrap p-value of a − b = 0 over a samples × models matrix (samples and
    models resampled together, :func:`~miabench.metrics.clustered.clustered_paired_roc`),
    with at least :data:`~miabench.metrics.seeds.P_VALUE_REPLICATES` replicates."""
    fpr = fpr_of(metric)
    deltas = clustered_paired_roc(
        a,
        b,
        labels,
        fprs=() if fpr is None else (fpr,),
        n_boot=max(n_boot, P_VALUE_REPLICATES),
        seed=TABLE_SEED,
    )
    return deltas[metric].p_value


def strongest_attack_columns(
    reference_results: Sequence[Mapping[str, Any]],
    tpr_key: str = "tpr_at_1pct_fpr",
    n_boot: int = 1000,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Per defense, the best reference attack beside the reference-free one of the same run.

    The best attack is chosen on the samples of :func:`selection_half` (pooled leave-one-out
    TPR at ``tpr_key``, then AUC) and every column is measured on the other half, so the
    choice does not favour the attack it picks. A run without ``scores_leave_one_out.csv``
    falls back to its recorded leave-one-out metrics, chosen and measured on the same pairs
    (``reference_selection`` says which).

    Args:
        reference_results: results.json contents of ``attack=reference`` runs, one setting
            per defense (the newest result of a setting is kept).
        tpr_key: the TPR reported beside the AUC and used (then the AUC) to pick the best.
        n_boot: replicates of the intervals; level: their coverage.

    Returns:
        ``{defense: columns}``: ``reference_seed``, ``reference_models``,
        ``reference_selection``, ``best_reference_attack``, its ``best_reference_auc`` and
        ``best_reference_<tpr_key>`` (leave-one-out, pooled over every model as the target,
        on the measuring half, with ``_lo``/``_hi``/``_note``), the same for
        ``reference_free_*`` (the run's reference-free attack on the same pairs), and
        ``best_vs_free_auc`` / ``best_vs_free_<tpr_key>``: paired bootstrap of best − free
        (whole samples resampled) with its raw ``_p``.

    Raises:
        ValueError: naming the files, when a defense has reference runs of several settings
            (seeds, numbers of references or knowledge): the column would mix them.
    """
    results, _ = newest_per_setting(reference_results)
    by_defense: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        by_defense.setdefault(result["run"]["defense"], []).append(result)
    out: dict[str, dict[str, Any]] = {}
    for defense, found in by_defense.items():
        if len(found) > 1:
            files = ", ".join(str(r.get("_path")) for r in found)
            raise ValueError(
                f"defense {defense}: {len(found)} reference runs of different settings "
                f"({files}); narrow table.reference.results to one per defense"
            )
        out[defense] = _strongest_row(found[0], tpr_key, n_boot, level)
    return out


def _strongest_row(
    result: Mapping[str, Any], tpr_key: str, n_boot: int, level: float
) -> dict[str, Any]:
    attacks = result["attacks"]
    free = [a for a, m in attacks.items() if _is_reference_free(m)]
    calibrated = [a for a in attacks if a not in free]
    row: dict[str, Any] = {
        "reference_seed": result["run"].get("seed"),
        "reference_models": result["run"]["reference"]["n_models"],
    }
    path = Path(result["_path"]).parent / "scores_leave_one_out.csv"
    if not path.is_file():
        return {**row, **_recorded_strongest(result, calibrated, free, tpr_key)}
    scores = read_run_csv(path)

    def matrix(column: str) -> pd.DataFrame:
        # samples × models, whatever the file's row order
        return scores.pivot(index="sample_id", columns="model", values=column)

    labels = matrix("label")
    choose = selection_half(labels.index)
    names = [a for a in [*calibrated, *free] if f"{a}.score" in scores]
    mats = {a: matrix(f"{a}.score").to_numpy() for a in names}
    y = labels.to_numpy().astype(np.int64)
    best = _strongest_of({a: m[choose] for a, m in mats.items()}, y[choose], calibrated, tpr_key)
    best_free = _strongest_of({a: m[choose] for a, m in mats.items()}, y[choose], free, tpr_key)
    row["reference_selection"] = (
        f"chosen on {int(choose.sum())} samples, measured on {int((~choose).sum())}"
    )
    row["best_reference_attack"] = best
    test_y = y[~choose]
    for metric in ("auc", tpr_key):
        for prefix, name in (("best_reference", best), ("reference_free", best_free)):
            estimate = (
                _pooled(mats[name][~choose], test_y, metric, n_boot, level)
                if name
                else Estimate(None, None, None)
            )
            row.update(estimate_columns(f"{prefix}_{metric}", estimate))
    if best and best_free:
        a, b = mats[best][~choose], mats[best_free][~choose]
        deltas = clustered_paired_roc(
            a, b, test_y, fprs=(fpr_of(tpr_key),), n_boot=n_boot, level=level, seed=TABLE_SEED
        )
        for metric in ("auc", tpr_key):
            estimate = deltas[metric]
            p = None if estimate.value is None else _clustered_p(a, b, test_y, metric, n_boot)
            estimate = SeedEstimate(
                estimate.value,
                estimate.low,
                estimate.high,
                None,
                1,
                estimate.note,
                p_value=p,
                test="paired bootstrap of samples (all their models)",
            )
            row.update(paired_columns(f"best_vs_free_{metric}", estimate))
    return row


def _recorded_strongest(
    result: Mapping[str, Any], calibrated: list[str], free: list[str], tpr_key: str
) -> dict[str, Any]:
    """Columns from the recorded leave-one-out metrics (no scores to split)."""
    loo = result.get("leave_one_out") or {}

    def strength(name: str) -> tuple[float, float]:
        values = loo.get(name) or {}
        return (values.get(tpr_key) or -1.0, values.get("auc") or -1.0)

    best = max((a for a in calibrated if a in loo), key=strength, default=None)
    best_free = max((a for a in free if a in loo), key=strength, default=None)
    row: dict[str, Any] = {
        "reference_selection": "chosen and measured on the same pairs (no scores to split)",
        "best_reference_attack": best,
    }
    for metric in ("auc", tpr_key):
        for prefix, name in (("best_reference", best), ("reference_free", best_free)):
            estimate = recorded_estimate(loo[name], metric) if name else Estimate(None, None, None)
            row.update(estimate_columns(f"{prefix}_{metric}", estimate))
    return row
