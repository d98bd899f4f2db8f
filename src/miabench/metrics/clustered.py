"""Bootstrap intervals over a samples × models matrix (leave-one-out reference attacks).

Leave-one-out matrices (samples × models) resample **samples and models together** (Owen
2007's pigeonhole bootstrap, :func:`clustered_weights`): resampling samples alone holds the
models fixed, and with a model effect the interval undercovers (0.60 at a model spread of
0.3 in the issue's simulation). The replicates are scored as in
:mod:`miabench.metrics.bootstrap` (:func:`~miabench.metrics.bootstrap.roc_replicates`), with
percentile intervals.

Seeded: the same inputs and seed give the same interval.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from miabench.metrics.bootstrap import MAX_CELLS, Estimate, _estimates, roc_replicates
from miabench.metrics.intervals import percentile_interval
from miabench.metrics.roc import (
    DEFAULT_FPRS,
    ArrayLike,
    ci_key,
    note_key,
    observable,
    roc_metrics,
    tpr_key,
    unobservable_note,
)


def clustered_weights(
    flat_labels: np.ndarray,
    n: int,
    k: int,
    n_boot: int,
    rng: np.random.Generator,
    resample_models: bool = True,
) -> Iterator[np.ndarray]:
    """Multiplicities of the pairs of an (n, k) samples × models matrix, flattened row-major,
    in chunks of replicates.

    Samples (rows) are drawn with replacement and, with ``resample_models``, models
    (columns) too, independently: a pair's multiplicity is the product of its sample's and
    its model's counts (Owen 2007, "The pigeonhole bootstrap"). Drawing models as well lets
    the interval see the spread between models (each trained on its own half of the data,
    with its own randomness); drawing samples alone holds the models fixed and undercovers
    as soon as models differ. Owen's bootstrap is mildly conservative (its variance counts
    the interaction term twice), so it errs on the side of coverage.

    A replicate with one class only is dropped: it has no ROC.
    """
    chunk = max(1, MAX_CELLS // max(n * k, 1))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        rows = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        if resample_models:
            draws = rng.integers(0, k, size=(b, k)) + k * np.arange(b)[:, None]
            cols = np.bincount(draws.ravel(), minlength=b * k).reshape(b, k).astype(np.float64)
        else:
            cols = np.ones((b, k))
        weights = (rows[:, :, None] * cols[:, None, :]).reshape(b, n * k)
        ok = ((weights * flat_labels).sum(1) > 0) & ((weights * (1 - flat_labels)).sum(1) > 0)
        yield weights[ok]


def _matrix(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be one (N, K) shape")
    return s, y


def _matrix_counts(y: np.ndarray) -> dict[str, int]:
    """Counts of a samples × models membership matrix, for the results."""
    return {
        "n_test_groups": int(y.shape[0]),
        "n_samples": int(y.shape[0]),
        "n_models": int(y.shape[1]),
        "n_member_pairs": int(y.sum()),
        "n_nonmember_pairs": int(y.size - y.sum()),
        "n_nonmember_samples": int((y == 0).any(axis=1).sum()),
    }


def _matrix_notes(y: np.ndarray, fprs: Sequence[float]) -> dict[str, str]:
    """Notes of the TPRs that the matrix's distinct non-member samples cannot resolve.

    Pooled non-member pairs are not independent (a sample's pairs share the sample), so
    the observability rule counts the distinct samples that are a non-member of some
    model, the conservative end of the effective sample size: the pairs would count each
    sample up to K times.
    """
    n_samples = int((y == 0).any(axis=1).sum())
    return {
        tpr_key(f): unobservable_note(f, n_samples, unit="distinct non-member samples")
        for f in fprs
        if not observable(f, n_samples)
    }


def clustered_roc_intervals(
    scores: ArrayLike,
    labels: ArrayLike,
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    resample_models: bool = True,
) -> dict[str, Any]:
    """Bootstrap intervals of metrics pooled over a samples × models matrix of scores.

    Leave-one-out reference attacks score every sample once per model (as the target), so
    the pairs of one sample are not independent evidence, nor are the pairs of one model,
    and a sample is a member for some models and a non-member for others: neither rows nor
    class-pure groups can be resampled. Samples and models are resampled together
    (:func:`clustered_weights`), and the pooled ROC metrics recomputed on the weighted pairs.
    Written by hand: no library bootstraps a ROC over a two-way crossed design.

    The keys merge over :func:`~miabench.metrics.roc.evaluate_scores`'s on the flattened
    pairs: a TPR that the distinct non-member samples cannot resolve is set to None with a
    note here (the pairs would count each sample once per model), and the reached operating
    point's interval is replaced by this bootstrap's (the exact binomial interval assumes
    independent pairs).

    Args:
        scores: (N, K) scores, higher = more likely member.
        labels: (N, K) 1 where the column's model trained on the row's sample.
        fprs: target FPRs.
        n_boot: replicates; 0 writes null intervals.
        level: coverage of the intervals.
        seed: seed of the resampling.
        resample_models: False holds the models fixed (samples only: the former interval).

    Returns:
        ``auc_ci95``, ``tpr_at_<x>pct_fpr_ci95`` (percentile intervals), for each FPR
        ``tpr_at_<x>pct_fpr_reached_ci95`` (at the FPR the pairs reach) with
        ``..._reached_fpr_ci95`` None, ``ci_method``, ``ci_level``, ``n_bootstrap``,
        ``bootstrap_unit``, and the counts ``n_samples`` (= ``n_test_groups``),
        ``n_models``, ``n_member_pairs``, ``n_nonmember_pairs``, ``n_nonmember_samples``;
        for an unresolvable TPR, ``tpr_at_<x>pct_fpr`` None and its ``_note``.
    """
    s, y = _matrix(scores, labels)
    n, k = s.shape
    flat_s, flat_y = s.reshape(-1), y.reshape(-1)
    notes = _matrix_notes(y, fprs)
    n_neg = int((flat_y == 0).sum())
    reached = {f: np.floor(n_neg * f + 1e-9) / n_neg for f in fprs}
    names = ["auc", *(tpr_key(f) for f in fprs)]
    out: dict[str, Any] = {ci_key(name, level): None for name in names}
    for f in fprs:
        out[ci_key(f"{tpr_key(f)}_reached", level)] = None
        out[ci_key(f"{tpr_key(f)}_reached_fpr", level)] = None
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        grid = sorted(set(fprs) | set(reached.values()))
        parts = [
            roc_replicates(flat_s, flat_y, w, grid)
            for w in clustered_weights(flat_y, n, k, n_boot, rng, resample_models)
        ]
        reps = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        for name in names:
            if name not in notes:
                out[ci_key(name, level)] = list(percentile_interval(reps[name], level))
        for f in fprs:
            interval = percentile_interval(reps[tpr_key(reached[f])], level)
            out[ci_key(f"{tpr_key(f)}_reached", level)] = list(interval)
    for name, note in notes.items():
        out[name], out[note_key(name)] = None, note
    unit = "sample and model (two-way)" if resample_models else "sample (all its models)"
    out.update(
        ci_method={key: "percentile" for key in out if key.endswith(f"_ci{level * 100:g}")},
        ci_level=level,
        n_bootstrap=int(n_boot),
        bootstrap_unit=unit,
        **_matrix_counts(y),
    )
    return out


def clustered_paired_roc(
    a: ArrayLike,
    b: ArrayLike,
    labels: ArrayLike,
    fprs: Sequence[float] = (0.01,),
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    resample_models: bool = True,
) -> dict[str, Estimate]:
    """Paired bootstrap of the difference of two scorers pooled over the same samples × models
    matrix (e.g. the best reference attack minus the reference-free one, leave-one-out).

    Every replicate draws samples and models (as :func:`clustered_roc_intervals`) once and
    scores both scorers on that draw, so what both see cancels.

    Args:
        a: (N, K) scores of the first scorer.
        b: (N, K) scores of the second, on the same pairs.
        labels: (N, K) membership of the pairs.
        fprs: target FPRs of the TPR differences.
        n_boot: replicates; 0 gives no interval.
        level: coverage; :attr:`Estimate.significant` is significance at 1 − level.
        seed: seed of the resampling.
        resample_models: False holds the models fixed.

    Returns:
        ``{"auc": Estimate, "tpr_at_<x>pct_fpr": Estimate, ...}`` of a − b with
        ``p_value``; a TPR the distinct non-member samples cannot resolve is None with a
        note.

    Note:
        When ``a`` is the best of several attacks chosen on these same pairs, the difference
        is biased upward (winner's curse): choose it on held-out samples.
    """
    sa, y = _matrix(a, labels)
    sb, _ = _matrix(b, labels)
    if sb.shape != y.shape:
        raise ValueError(f"scores {sa.shape}, {sb.shape} and labels {y.shape} must be one (N, K)")
    n, k = y.shape
    flat_a, flat_b, flat_y = sa.reshape(-1), sb.reshape(-1), y.reshape(-1)
    point_a, point_b = roc_metrics(flat_a, flat_y, fprs), roc_metrics(flat_b, flat_y, fprs)
    points = {name: np.asarray([point_a[name] - point_b[name]]) for name in point_a}
    reps = None
    if n_boot > 0:
        deltas: dict[str, list[np.ndarray]] = {name: [] for name in points}
        rng = np.random.default_rng(seed)
        for w in clustered_weights(flat_y, n, k, n_boot, rng, resample_models):
            ra = roc_replicates(flat_a, flat_y, w, fprs)
            rb = roc_replicates(flat_b, flat_y, w, fprs)
            for name in deltas:
                deltas[name].append(ra[name] - rb[name])
        reps = {name: np.concatenate(v) for name, v in deltas.items()}
    return _estimates(points, reps, level, _matrix_notes(y, fprs), test=True)
