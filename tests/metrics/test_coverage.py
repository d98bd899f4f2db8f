"""Coverage of the intervals by seeded simulation with known truth, against the former ones.

Each test runs a small number of trials (seeded: deterministic) with a margin chosen from
the larger runs of experiments/bench/coverage.py, and asserts both that the interval the
package now reports covers and that the former interval (still available by option) does
not: a regression to the former behaviour fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from miabench.metrics.bootstrap import (
    ScoredRows,
    paired_roc,
    roc_intervals,
)
from miabench.metrics.clustered import clustered_roc_intervals
from miabench.metrics.intervals import (
    acceleration,
    auc_jackknife,
    bca_interval,
    bootstrap_p_value,
    jackknife_influence,
)


def _auc_trials(auc: float, n: int, trials: int, n_boot: int, method: str) -> float:
    d = np.sqrt(2) * stats.norm.ppf(auc)  # members N(d, 1), non-members N(0, 1)
    rng = np.random.default_rng(0)
    covered = 0
    for t in range(trials):
        labels = np.r_[np.ones(n, dtype=int), np.zeros(n, dtype=int)]
        scores = rng.normal(size=2 * n) + d * labels
        low, high = roc_intervals(
            scores, labels, fprs=(), n_boot=n_boot, seed=t, auc_method=method
        )["auc_ci95"]
        covered += low <= auc <= high
    return covered / trials


def test_bca_auc_interval_covers_near_one_where_the_percentile_one_does_not() -> None:
    """AUC 0.97 on 32 members vs 32 non-members: on 1000 trials the percentile interval
    covered 0.89 and BCa 0.925 (still short of 0.95: docs/statistics.md); on the same 800
    trials BCa is ahead by more than the noise of a paired comparison."""
    bca = _auc_trials(0.97, 32, 800, 400, "bca")
    percentile = _auc_trials(0.97, 32, 800, 400, "percentile")
    assert percentile <= 0.905, percentile
    assert bca >= 0.91 and bca - percentile >= 0.02, (bca, percentile)


def _loo_coverage(spread: float, resample_models: bool, trials: int = 80) -> float:
    """Samples × models matrix: a per-sample effect, and a per-model membership signal
    d + spread * z (models differ in how much they leak). Truth: the population pooled AUC
    Phi(d / sqrt(2 (1 + 1) + spread^2))."""
    n, k, d = 60, 8, 0.8
    truth = stats.norm.cdf(d / np.sqrt(4 + spread**2))
    rng = np.random.default_rng(1)
    covered = 0
    for t in range(trials):
        labels = np.zeros((n, k), dtype=int)
        for j in range(k):
            labels[rng.permutation(n)[: n // 2], j] = 1
        signal = d + spread * rng.normal(size=k)
        scores = rng.normal(size=(n, 1)) + rng.normal(size=(n, k)) + signal * labels
        out = clustered_roc_intervals(
            scores, labels, fprs=(), n_boot=200, seed=t, resample_models=resample_models
        )
        covered += out["auc_ci95"][0] <= truth <= out["auc_ci95"][1]
    return covered / trials


def test_two_way_loo_interval_covers_under_a_model_effect_and_samples_alone_does_not() -> None:
    two_way, samples_only = _loo_coverage(0.6, True), _loo_coverage(0.6, False)
    assert two_way >= 0.92, two_way
    assert samples_only <= 0.8, samples_only  # the former interval (issue: 0.41-0.60)


def test_closed_form_jackknife_equals_leaving_each_row_out() -> None:
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(15, dtype=int), np.zeros(12, dtype=int)]
    scores = np.round(rng.normal(size=27) + labels, 1)  # ties count one half
    members, others = auc_jackknife(scores, labels)
    rows = np.arange(27)
    brute = [roc_auc_score(labels[rows != i], scores[rows != i]) for i in rows]
    np.testing.assert_allclose(members, brute[:15], atol=1e-12)
    np.testing.assert_allclose(others, brute[15:], atol=1e-12)
    # whole groups (class-pure identities) left out
    groups = np.r_[np.arange(15) // 3, 100 + np.arange(12) // 4]
    g_members, g_others = auc_jackknife(scores, labels, groups)
    brute = [roc_auc_score(labels[groups != g], scores[groups != g]) for g in np.unique(groups)]
    np.testing.assert_allclose(np.r_[g_members, g_others], brute, atol=1e-12)


def test_acceleration_of_a_mean_is_its_skewness_formula_and_bca_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    x = rng.exponential(size=40)
    loo = (x.sum() - x) / (len(x) - 1)
    a = acceleration([jackknife_influence(loo)])
    c = x - x.mean()
    assert a == pytest.approx((c**3).sum() / (6 * ((c**2).sum()) ** 1.5))  # E-T eq. 14.15
    reps = rng.choice(x, size=(20000, len(x))).mean(axis=1)
    ours = bca_interval(reps, x.mean(), a)
    theirs = stats.bootstrap((x,), np.mean, n_resamples=20000, method="BCa", random_state=4)
    ci = theirs.confidence_interval
    assert ours == pytest.approx((ci.low, ci.high), abs=0.03)
    # no bias and no acceleration: the percentile interval
    symmetric = np.r_[-np.arange(1, 1001), np.arange(1, 1001)].astype(float)
    assert bca_interval(symmetric, 0.0, 0.0) == pytest.approx(
        tuple(np.quantile(symmetric, [0.025, 0.975]))
    )


def test_bootstrap_p_value_is_never_zero_and_uniform_under_the_null() -> None:
    assert bootstrap_p_value(np.full(9999, 0.3)) == pytest.approx(2 / 10000)
    assert bootstrap_p_value(np.zeros(100)) == 1.0
    reps = np.r_[np.full(30, -1.0), np.full(970, 1.0)]
    assert bootstrap_p_value(reps) == pytest.approx(2 * 31 / 1001)
    # a paired test of two equally strong, independent scorers: p < 0.05 about 5 % of the time
    rng = np.random.default_rng(5)
    p = []
    for t in range(200):
        labels = np.r_[np.ones(60, dtype=int), np.zeros(60, dtype=int)]
        a = rng.normal(size=120) + labels
        b = rng.normal(size=120) + labels
        p.append(
            paired_roc([ScoredRows.of(labels, a, b)], fprs=(), n_boot=200, seed=t)["auc"].p_value
        )
    rate = np.mean(np.asarray(p) < 0.05)
    assert rate <= 0.09, rate
    assert stats.kstest(p, "uniform").pvalue > 0.01
