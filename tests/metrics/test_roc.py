"""ROC metrics and thresholds agree with scikit-learn and respect the calibration split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from miabench.metrics.calibration import calibration_split
from miabench.metrics.roc import (
    choose_threshold,
    evaluate_scores,
    roc_curve,
    roc_metrics,
    threshold_metrics,
    tpr_at_fpr,
    tpr_key,
)

FPRS = (0.001, 0.01, 0.1)


def _sklearn_tpr_at(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    # drop_intermediate=False: dropped collinear points could hold the best TPR under target.
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    return float(tpr[fpr <= target].max())


def _tied(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes with many exact ties, and scores far outside [0, 1]."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(size=n) + 0.7 * labels, 1) * 50.0
    return scores, labels


def _separable(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return rng.random(n) + 2.0 * labels, labels


@pytest.mark.parametrize("make", [_tied, _separable])
def test_roc_metrics_match_sklearn(make) -> None:
    scores, labels = make(3000, 0)
    out = roc_metrics(scores, labels, fprs=FPRS)
    assert out["auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-6)
    for fpr in FPRS:
        assert out[tpr_key(fpr)] == pytest.approx(_sklearn_tpr_at(labels, scores, fpr), abs=1e-12)


def test_roc_curve_matches_sklearn_and_accepts_tensors() -> None:
    scores, labels = _tied(500, 1)
    ours = roc_curve(torch.tensor(scores), torch.tensor(labels))
    theirs = skm.roc_curve(labels, scores, drop_intermediate=False)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_tpr_at_fpr_applies_row_wise() -> None:
    scores, labels = _tied(400, 12)
    fpr, tpr, _ = roc_curve(scores, labels)
    one = tpr_at_fpr(fpr, tpr, 0.05)
    both = tpr_at_fpr(np.stack([fpr, fpr]), np.stack([tpr, tpr]), 0.05)
    assert isinstance(one, float) and one == _sklearn_tpr_at(labels, scores, 0.05)
    np.testing.assert_array_equal(both, [one, one])


def test_infinite_scores_keep_their_order_and_thresholds() -> None:
    # scikit-learn refuses infinities; the metrics depend only on the order of the scores
    scores, labels = _tied(300, 13)
    scores[:5], scores[5:8] = np.inf, -np.inf
    finite = np.where(np.isinf(scores), np.sign(scores) * 1e9, scores)
    assert roc_metrics(scores, labels, FPRS) == roc_metrics(finite, labels, FPRS)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    ref = skm.roc_curve(labels, finite, drop_intermediate=False)
    np.testing.assert_array_equal(fpr, ref[0])
    np.testing.assert_array_equal(tpr, ref[1])
    assert thresholds[0] == thresholds[1] == np.inf and thresholds[-1] == -np.inf
    np.testing.assert_array_equal(thresholds[2:-1], ref[2][2:-1])
    assert np.isfinite(choose_threshold(scores, labels))


def test_separable_scores_give_perfect_metrics() -> None:
    scores, labels = _separable(400, 2)
    out = roc_metrics(scores, labels)
    assert out == {"auc": 1.0, "tpr_at_0.1pct_fpr": 1.0, "tpr_at_1pct_fpr": 1.0}


def test_key_names() -> None:
    assert list(roc_metrics(*_tied(100, 3))) == ["auc", "tpr_at_0.1pct_fpr", "tpr_at_1pct_fpr"]


def test_random_scorer_is_near_chance() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 4000)
    assert roc_metrics(rng.random(4000), labels)["auc"] == pytest.approx(0.5, abs=0.1)


def test_nan_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        roc_metrics(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 1]))


def test_single_class_is_refused() -> None:
    with pytest.raises(ValueError, match="both"):
        roc_metrics(np.array([0.1, 0.2]), np.array([1, 1]))


@pytest.mark.parametrize("threshold", [-50.0, 0.0, 25.0, 75.0])
def test_threshold_metrics_match_sklearn(threshold: float) -> None:
    scores, labels = _tied(1000, 5)
    pred = (scores >= threshold).astype(int)
    out = threshold_metrics(scores, labels, threshold)
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred), abs=1e-6)
    assert out["precision"] == pytest.approx(
        skm.precision_score(labels, pred, zero_division=0), abs=1e-6
    )
    assert out["recall"] == pytest.approx(skm.recall_score(labels, pred), abs=1e-6)
    assert out["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(labels, pred), abs=1e-6
    )


def test_choose_threshold_maximises_balanced_accuracy() -> None:
    scores, labels = _tied(600, 6)
    threshold = choose_threshold(scores, labels)
    best = max(
        skm.balanced_accuracy_score(labels, (scores >= t).astype(int)) for t in np.unique(scores)
    )
    achieved = skm.balanced_accuracy_score(labels, (scores >= threshold).astype(int))
    assert achieved == pytest.approx(best)
    # Midpoint of the interval between the cut and the next lower score, never a score itself.
    assert threshold not in set(scores.tolist())


def test_choose_threshold_middle_of_gap() -> None:
    assert choose_threshold([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1]) == 2.5


def test_threshold_comes_from_calibration_rows_only() -> None:
    scores, labels = _tied(1000, 9)
    cal = calibration_split(labels, 0.5, seed=0)
    first = evaluate_scores(scores, labels, cal)
    assert first["threshold"] == choose_threshold(scores[cal], labels[cal])

    # Test rows scrambled (even flipped into a perfect attack): same threshold, new metrics.
    changed = scores.copy()
    changed[~cal] = np.where(labels[~cal] == 1, 1e6, -1e6)
    second = evaluate_scores(changed, labels, cal)
    assert second["threshold"] == first["threshold"]
    assert second["auc"] == 1.0 and first["auc"] < 1.0

    assert first["n_calibration"] == int(cal.sum()) and first["n_test"] == int((~cal).sum())
    test = ~cal
    assert first["auc"] == pytest.approx(skm.roc_auc_score(labels[test], scores[test]), abs=1e-6)
    pred = (scores[test] >= first["threshold"]).astype(int)
    assert first["precision"] == pytest.approx(skm.precision_score(labels[test], pred), abs=1e-6)
    assert first["recall"] == pytest.approx(skm.recall_score(labels[test], pred), abs=1e-6)


def test_no_calibration_rows_reports_auc_on_all() -> None:
    scores, labels = _tied(300, 10)
    out = evaluate_scores(scores, labels, np.zeros(len(scores), dtype=bool))
    assert out["threshold"] is None and out["accuracy"] is None and out["precision"] is None
    assert out["n_calibration"] == 0 and out["n_test"] == 300
    assert out["auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-6)


def test_unobservable_tpr_is_null_with_a_note() -> None:
    # 100 test non-members resolve FPR 1 % (one false positive) but not 0.1 %
    rng = np.random.default_rng(11)
    labels = np.array([1] * 60 + [0] * 100)
    scores = rng.normal(size=160) + labels
    out = evaluate_scores(scores, labels, np.zeros(160, dtype=bool))
    assert out["tpr_at_0.1pct_fpr"] is None
    assert out["tpr_at_0.1pct_fpr_note"] == "not observable: 100 test non-members < 1000"
    assert out["tpr_at_1pct_fpr"] == pytest.approx(_sklearn_tpr_at(labels, scores, 0.01))
    assert "tpr_at_1pct_fpr_note" not in out
    assert out["n_test_members"] == 60 and out["n_test_nonmembers"] == 100
    # with a calibration half, the counts are the test half's
    cal = calibration_split(labels, 0.5, seed=0)
    half = evaluate_scores(scores, labels, cal)
    assert half["n_test_nonmembers"] == 50 and half["tpr_at_1pct_fpr"] is None
