"""ROC metrics and thresholds agree with scikit-learn and respect the calibration split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm
from sklearn import metrics as skm

from miabench.metrics.calibration import calibration_split
from miabench.metrics.roc import (
    HEAVY_TIES_SHARE,
    MIN_NONMEMBERS_PER_FPR,
    choose_threshold,
    evaluate_scores,
    observable,
    reached_operating_point,
    roc_curve,
    roc_metrics,
    threshold_metrics,
    tied_fraction,
    tpr_at_fpr,
    tpr_key,
)

FPRS = (0.001, 0.01, 0.1)


def _sklearn_tpr_at(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    """scikit-learn's ROC interpolated linearly at ``target`` (np.interp takes the last of
    equal FPRs, the highest TPR, at a point of the curve)."""
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    return float(np.interp(target, fpr, tpr))


def _sklearn_step_tpr_at(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
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
    # 1000 test non-members hold 10 false positives at 1 % FPR but 1 at 0.1 %
    rng = np.random.default_rng(11)
    labels = np.array([1] * 60 + [0] * 1000)
    scores = rng.normal(size=1060) + labels
    out = evaluate_scores(scores, labels, np.zeros(1060, dtype=bool))
    assert out["tpr_at_0.1pct_fpr"] is None
    assert out["tpr_at_0.1pct_fpr_note"] == "not observable: 1000 test non-members < 10000"
    assert out["tpr_at_1pct_fpr"] == pytest.approx(_sklearn_tpr_at(labels, scores, 0.01))
    assert "tpr_at_1pct_fpr_note" not in out
    assert out["n_test_members"] == 60 and out["n_test_nonmembers"] == 1000
    # the reached operating point stands in for the null one: 1 false positive of 1000
    assert out["tpr_at_0.1pct_fpr_reached_fpr"] == 0.001
    assert out["tpr_at_0.1pct_fpr_reached"] == pytest.approx(
        _sklearn_step_tpr_at(labels, scores, 0.001)
    )
    # with a calibration half, the counts are the test half's
    cal = calibration_split(labels, 0.5, seed=0)
    half = evaluate_scores(scores, labels, cal)
    assert half["n_test_nonmembers"] == 500 and half["tpr_at_1pct_fpr"] is None
    assert half["tpr_at_1pct_fpr_note"] == "not observable: 500 test non-members < 1000"
    assert half["tpr_at_1pct_fpr_reached_fpr"] == 0.01


def test_observability_needs_ten_false_positives_at_the_target() -> None:
    assert MIN_NONMEMBERS_PER_FPR == 10
    assert observable(0.01, 1000) and not observable(0.01, 999)
    assert observable(0.001, 10000) and not observable(0.001, 9999)
    assert observable(0.01, 100, per_fpr=1)  # the former rule, on request


def test_low_fpr_estimate_on_few_nonmembers_is_biased_and_the_rule_refuses_it() -> None:
    """Known truth: members N(1.5, 1), non-members N(0, 1), TPR at 1 % FPR is
    1 - Phi(z_0.99 - 1.5) = 0.204. With 100 non-members the estimate is biased up (the issue
    measured 0.264); with 1000 (the rule's minimum) it is close to the truth."""
    rng = np.random.default_rng(3)
    truth = 1 - norm.cdf(norm.ppf(0.99) - 1.5)

    def mean_estimate(n0: int, trials: int) -> float:
        values = []
        for _ in range(trials):
            labels = np.r_[np.ones(500, dtype=int), np.zeros(n0, dtype=int)]
            scores = rng.normal(size=500 + n0) + 1.5 * labels
            values.append(roc_metrics(scores, labels, (0.01,))[tpr_key(0.01)])
        return float(np.mean(values))

    few, enough = mean_estimate(100, 300), mean_estimate(1000, 100)
    assert few - truth > 0.03  # one false positive is a tenth of the target: biased up
    assert abs(enough - truth) < 0.02
    assert not observable(0.01, 100) and observable(0.01, 1000)


def test_step_rule_on_request_equals_the_largest_tpr_within_budget() -> None:
    scores, labels = _tied(800, 14)
    fpr, tpr, _ = roc_curve(scores, labels)
    for target in (0.003, 0.01, 0.05, 0.2):
        step = tpr_at_fpr(fpr, tpr, target, interpolate=False)
        assert step == _sklearn_step_tpr_at(labels, scores, target)
        assert tpr_at_fpr(fpr, tpr, target) >= step  # interpolation never loses TPR


def test_interpolated_tpr_off_and_on_the_grid_matches_sklearn_and_np_interp() -> None:
    rng = np.random.default_rng(15)
    for t in range(30):
        n = int(rng.integers(30, 500))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(size=n) + labels, int(t % 3))
        fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
        for target in [*rng.random(4), *fpr[1:6]]:
            assert tpr_at_fpr(*roc_curve(scores, labels)[:2], target) == pytest.approx(
                _sklearn_tpr_at(labels, scores, target), abs=1e-12
            )


def test_quantised_scores_keep_their_tpr_through_ties() -> None:
    """No signal, 4 score levels (as 4-level output truncation): the step rule cannot cut
    into the top tie block and reports TPR 0 at 1 % FPR; the interpolated ROC (a randomised
    threshold) reports about 1 %, what chance gives, and the ties are flagged."""
    rng = np.random.default_rng(16)
    labels = np.r_[np.ones(4000, dtype=int), np.zeros(4000, dtype=int)]
    scores = rng.integers(0, 4, 8000).astype(float)
    fpr, tpr, _ = roc_curve(scores, labels)
    assert tpr_at_fpr(fpr, tpr, 0.01, interpolate=False) == 0.0
    assert tpr_at_fpr(fpr, tpr, 0.01) == pytest.approx(0.01, abs=0.003)
    assert tied_fraction(scores, labels) == 1.0
    out = evaluate_scores(scores, labels, np.zeros(8000, dtype=bool), fprs=(0.01,))
    assert out["tied_fraction"] > HEAVY_TIES_SHARE and "tie" in out["ties_note"]
    untied = evaluate_scores(rng.normal(size=8000), labels, np.zeros(8000, dtype=bool))
    assert untied["tied_fraction"] == 0.0 and "ties_note" not in untied


def test_reached_operating_point_and_its_exact_intervals() -> None:
    rng = np.random.default_rng(17)
    labels = np.r_[np.ones(200, dtype=int), np.zeros(250, dtype=int)]
    scores = rng.normal(size=450) + 2 * labels
    out = reached_operating_point(scores, labels, 0.01)
    key = "tpr_at_1pct_fpr_reached"
    # 250 non-members reach 2 / 250 = 0.8 % at most within 1 %
    assert out[f"{key}_fpr"] == 2 / 250
    hits, n1, k, n0 = out[f"{key}_counts"]
    members_above_third = int((scores[:200] > np.sort(scores[200:])[-3]).sum())
    assert (hits, n1, k, n0) == (members_above_third, 200, 2, 250)
    assert out[key] == hits / 200
    exact = binomtest(members_above_third, 200).proportion_ci(method="exact")
    assert out[f"{key}_ci95"] == pytest.approx([exact.low, exact.high])
    fpr_exact = binomtest(2, 250).proportion_ci(method="exact")
    assert out[f"{key}_fpr_ci95"] == pytest.approx([fpr_exact.low, fpr_exact.high])
    # too few non-members for even one false positive: TPR at zero false positives
    few = reached_operating_point(scores[150:], labels[150:], 0.001)
    assert few["tpr_at_0.1pct_fpr_reached_fpr"] == 0.0
    assert few["tpr_at_0.1pct_fpr_reached_fpr_ci95"][0] == 0.0


def test_reached_tpr_interval_covers_the_true_tpr_of_the_chosen_cut() -> None:
    """Known truth: the cut the test chose (strictly above the (k+1)-th largest non-member)
    has true TPR 1 - Phi(cut - d); the Clopper-Pearson interval covers it >= 95 % (exact,
    conservative), on 100 non-members where the nominal 1 % key is refused."""
    rng = np.random.default_rng(18)
    d, covered, trials = 1.5, 0, 300
    for _ in range(trials):
        labels = np.r_[np.ones(60, dtype=int), np.zeros(100, dtype=int)]
        scores = rng.normal(size=160) + d * labels
        out = reached_operating_point(scores, labels, 0.01)
        cut = np.sort(scores[60:])[-2]  # k = 1: the cut sits above the 2nd largest
        low, high = out["tpr_at_1pct_fpr_reached_ci95"]
        covered += low <= 1 - norm.cdf(cut - d) <= high
    assert covered / trials >= 0.93


def test_threshold_metrics_wilson_intervals_and_counts() -> None:
    scores, labels = _tied(500, 19)
    out = threshold_metrics(scores, labels, 25.0)
    pred = scores >= 25.0
    z = norm.ppf(0.975)
    for name, k, n in (
        ("accuracy", int((pred == labels).sum()), 500),
        ("precision", int((pred & (labels == 1)).sum()), int(pred.sum())),
        ("recall", int((pred & (labels == 1)).sum()), int(labels.sum())),
    ):
        assert out[f"{name}_counts"] == [k, n]
        # the Wilson score interval, written out (Agresti & Coull 1998, eq. 2)
        centre = (k + z**2 / 2) / (n + z**2)
        half = z / (n + z**2) * np.sqrt(k * (n - k) / n + z**2 / 4)
        assert out[f"{name}_ci95"] == pytest.approx([centre - half, centre + half], abs=1e-9)
    nobody = threshold_metrics(scores, labels, 1e9)
    assert nobody["precision"] == 0.0 and nobody["precision_ci95"] is None


def test_accuracy_interval_covers_the_true_accuracy() -> None:
    """Known truth: members N(1, 1), non-members N(0, 1), threshold 0.5, balanced classes:
    accuracy Phi(0.5). The Wilson interval covers it close to 95 % on 40 + 40 rows."""
    rng = np.random.default_rng(20)
    truth, covered, trials = norm.cdf(0.5), 0, 400
    for _ in range(trials):
        labels = np.r_[np.ones(40, dtype=int), np.zeros(40, dtype=int)]
        low, high = threshold_metrics(rng.normal(size=80) + labels, labels, 0.5)["accuracy_ci95"]
        covered += low <= truth <= high
    assert 0.92 <= covered / trials <= 0.98
