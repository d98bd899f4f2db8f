"""The estimates over seeds every table writer shows, and their CSV columns.

:func:`seed_estimate` averages a metric over a setting's seeds with a t-interval over the
per-seed values (training randomness included, :mod:`miabench.metrics.seeds`);
:func:`paired_difference` tests a difference of two arms (over seeds, or by resampling
samples where both arms are one victim); :func:`apply_multiple_testing` adjusts all the
p-values of one table together. The runs themselves are read and grouped by
:mod:`miabench.results.runs`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from miabench.metrics.bootstrap import Estimate, ScoredRows, replicate_means, roc_replicates
from miabench.metrics.multiplicity import adjust
from miabench.metrics.roc import ci_key, note_key, observable, roc_metrics, unobservable_note
from miabench.metrics.seeds import (
    ONE_SEED,
    P_VALUE_REPLICATES,
    SeedEstimate,
    over_seeds,
    per_seed_text,
    samples_test,
)
from miabench.results.runs import held_out_scores

#: the seed of the tables' bootstrap replicates (a table rebuilt from the same runs is the same)
TABLE_SEED = 0
#: significance level of a table's ``*`` (on Holm/BH-adjusted p-values)
ALPHA = 0.05


def to_float(value: Any) -> float:
    """A recorded number as a float; NaN for None or anything that is not a number."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def paired_attacks(
    runs: Sequence[Mapping[str, Any]], a: str, b: str, metric: str = "auc"
) -> Estimate:
    """Attack ``a`` minus attack ``b`` scored in the same runs (one victim per seed), on each
    run's test samples: :func:`paired_difference` with ``same_victim`` (a paired bootstrap of
    the samples, averaged over the runs' seeds).

    Returns an empty estimate with a note when a run has no scores.csv with both attacks.
    """
    rows = []
    for result in runs:
        found = held_out_scores(result, [a, b])
        if found is None:
            return Estimate(None, None, None, note=f"no scores.csv with {a} and {b}")
        test, groups = found
        rows.append(
            ScoredRows.of(test["label"], test[f"{a}.score"], test[f"{b}.score"], groups=groups)
        )
    n_boot, level = bootstrap_settings(runs)
    return paired_difference(rows, metric, True, n_boot, level)


def bootstrap_settings(runs: Sequence[Mapping[str, Any]]) -> tuple[int, float]:
    """Replicates and level of the runs' own intervals (1000 and 0.95 for older results)."""
    infos = [i for r in runs for i in r["attacks"].values() if isinstance(i, Mapping)]
    n_boot = max((int(i.get("n_bootstrap") or 0) for i in infos), default=0) or 1000
    level = next((float(i["ci_level"]) for i in infos if i.get("ci_level")), 0.95)
    return n_boot, level


#: recorded attack metrics that are proportions (their seed intervals are clipped to [0, 1])
PROPORTIONS = frozenset({"auc", "accuracy", "accuracy_at_decision", "precision", "recall"})


def fpr_of(metric: str) -> float | None:
    match = re.fullmatch(r"tpr_at_(.+)pct_fpr", metric)
    return float(match.group(1)) / 100 if match else None


def recorded_estimate(info: Mapping[str, Any], metric: str, level: float | None = None) -> Estimate:
    """A metric as one results.json entry records it: its value, its interval at ``level``
    (the entry's own ``ci_level`` by default) and, where the value is null, the note why."""
    level = info.get("ci_level", 0.95) if level is None else level
    low, high = info.get(ci_key(metric, level)) or (None, None)
    value = info.get(metric)
    return Estimate(
        None if value is None else float(value), low, high, None, 1, info.get(note_key(metric))
    )


def seed_estimate(runs: Sequence[Mapping[str, Any]], attack: str, metric: str) -> Estimate:
    """One attack metric over the seeds of a setting.

    One run: its value and single-run interval from results.json, which resamples the test
    samples only (no training randomness). Several: the mean over seeds with Student's
    t-interval over the per-seed values (:func:`miabench.metrics.seeds.over_seeds`), which
    counts how the victims trained; with 2 seeds it is very wide, honestly so. A metric null
    in any run (a TPR at an FPR too low for the test half) is null, with that run's note.

    Returns:
        A :class:`~miabench.metrics.seeds.SeedEstimate` (``per_seed`` holds each seed's
        value).
    """
    infos = [(r["attacks"].get(attack) or {}) for r in runs]
    if not any(metric in info for info in infos):
        return Estimate(None, None, None, None, len(runs))
    _, level = bootstrap_settings(runs)
    notes = [info.get(note_key(metric)) for info in infos if info.get(metric) is None]
    if notes:
        note = next((n for n in notes if n), None)
        return Estimate(None, None, None, None, len(runs), note)
    values = [to_float(info.get(metric)) for info in infos]
    if len(runs) == 1:
        one = recorded_estimate(infos[0], metric, level)
        return SeedEstimate(
            one.value, one.low, one.high, None, 1, one.note, per_seed=tuple(values), test=ONE_SEED
        )
    # AUCs, TPRs and the threshold metrics are proportions; other metrics are left unbounded
    bounded = metric in PROPORTIONS or fpr_of(metric) is not None
    return over_seeds(values, level, bounds=(0.0, 1.0) if bounded else None)


def paired_difference(
    rows: Sequence[ScoredRows],
    metric: str,
    same_victim: bool,
    n_boot: int,
    level: float,
) -> Estimate:
    """The difference a − b of a metric (``auc`` or a TPR@FPR) of two scorers on the same
    test rows of each seed, with its interval and two-sided p-value.

    Two victims trained separately (a defense against the undefended victim): the paired
    t-test over the per-seed differences (training randomness counted; one seed: the value
    alone, untested). One victim (a post-hoc defense, or two attacks of one run): a paired
    bootstrap of the samples, one resample applied to both arms, with at least
    :data:`~miabench.metrics.seeds.P_VALUE_REPLICATES` replicates for the p-value.

    Args:
        rows: per seed, the test rows with two score arrays ``(a, b)``.
        metric: ``auc`` or ``tpr_at_<x>pct_fpr``.
        same_victim: both arms scored one victim per seed.
        n_boot: replicates of the runs' own intervals (raised to the p-value's minimum).
        level: coverage of the interval.
    """
    fpr = fpr_of(metric)
    fprs = () if fpr is None else (fpr,)
    fewest = min(r.n_nonmembers for r in rows)
    if fpr is not None and not observable(fpr, fewest):
        return Estimate(None, None, None, None, len(rows), unobservable_note(fpr, fewest))
    name = "auc" if fpr is None else metric
    points = [
        roc_metrics(r.scores[0], r.labels, fprs)[name]
        - roc_metrics(r.scores[1], r.labels, fprs)[name]
        for r in rows
    ]
    if not same_victim:
        return over_seeds(points, level, paired=True)

    def delta(run: ScoredRows, w: np.ndarray) -> dict[str, np.ndarray]:
        a = roc_replicates(run.scores[0], run.labels, w, fprs)[name]
        return {name: a - roc_replicates(run.scores[1], run.labels, w, fprs)[name]}

    if n_boot <= 0:
        return samples_test(points, None, level)
    reps = replicate_means(rows, delta, max(n_boot, P_VALUE_REPLICATES), TABLE_SEED)[name]
    return samples_test(points, reps, level)


def same_victim(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two runs scored the same trained victim: equal recorded ``run.victim_key`` (a
    post-hoc defense such as output truncation reuses the undefended victim)."""
    key = a["run"].get("victim_key")
    return key is not None and key == b["run"].get("victim_key")


#: the columns :func:`estimate_columns` writes beside a value, in order
ESTIMATE_SIBLINGS = ("_std", "_lo", "_hi", "_note", "_per_seed")


#: the further columns of a tested difference (:func:`paired_columns`)
TEST_SIBLINGS = ("_p", "_p_adj", "_test", "_sig")


def estimate_columns(name: str, estimate: Estimate) -> dict[str, Any]:
    """CSV columns of an estimate: ``name`` (value, the mean over seeds), ``name_std`` (over
    seeds; empty for one seed), ``name_lo``/``name_hi`` (interval), ``name_note``,
    ``name_per_seed`` (each seed's value, ``"0.9100;0.9300"``)."""
    return {
        name: to_float(estimate.value),
        f"{name}_std": to_float(estimate.std),
        f"{name}_lo": to_float(estimate.low),
        f"{name}_hi": to_float(estimate.high),
        f"{name}_note": estimate.note,
        f"{name}_per_seed": per_seed_text(getattr(estimate, "per_seed", ()) or ()),
    }


def paired_columns(name: str, estimate: Estimate) -> dict[str, Any]:
    """A tested difference's columns: :func:`estimate_columns`, ``<name>_p`` (raw two-sided
    p-value), ``_p_adj`` (filled by :func:`apply_multiple_testing`), ``_test`` (how it was
    tested) and ``_sig`` (raw p < 0.05 until adjusted, then adjusted p < 0.05)."""
    p = getattr(estimate, "p_value", None)
    return {
        **estimate_columns(name, estimate),
        f"{name}_p": to_float(p),
        f"{name}_p_adj": math.nan,
        f"{name}_test": getattr(estimate, "test", None),
        f"{name}_sig": p is not None and p < ALPHA,
    }


def apply_multiple_testing(
    frame: pd.DataFrame, method: str = "holm", alpha: float = ALPHA
) -> tuple[pd.DataFrame, int]:
    """Adjust every p-value of one table together (``<name>_p`` of each
    :func:`paired_columns` difference, every row) by Holm or Benjamini–Hochberg
    (:func:`miabench.metrics.multiplicity.adjust`): ``_p_adj`` is filled and ``_sig`` is
    adjusted p < ``alpha``.

    Returns:
        The adjusted copy and the number of tests (p-values present).
    """
    names = [
        c[: -len("_sig")] for c in frame.columns if c.endswith("_sig") and f"{c[:-4]}_p" in frame
    ]
    if not names:
        return frame, 0
    out = frame.copy()
    raw = np.concatenate(
        [pd.to_numeric(out[f"{n}_p"], errors="coerce").to_numpy(float) for n in names]
    )
    adjusted = adjust(raw, method).reshape(len(names), len(out))
    for n, values in zip(names, adjusted, strict=True):
        out[f"{n}_p_adj"] = values
        out[f"{n}_sig"] = values < alpha  # NaN (untested) compares False
    return out, int((~np.isnan(raw)).sum())


def multiple_testing_note(method: str, n_tests: int, alpha: float = ALPHA) -> str:
    """The Markdown note of a table's correction."""
    name = {"holm": "Holm", "bh": "Benjamini–Hochberg"}.get(method, method)
    return (
        f"* = significant at {alpha:g} after {name} correction over this table's {n_tests} "
        "tests (`table.multiple_testing`); the CSV keeps each raw p (`_p`) beside the "
        "adjusted one (`_p_adj`) and says how each was tested (`_test`)."
    )
