"""Intervals and tests over seeds, against scipy and by simulation with known truth."""

import numpy as np
import pytest
from scipy import stats

from miabench.metrics.bootstrap import ScoredRows, paired_roc, pooled_roc
from miabench.metrics.roc import roc_metrics
from miabench.metrics.seeds import (
    PAIRED_T_OVER_SEEDS,
    bootstrap_p_value,
    over_seeds,
    samples_test,
    t_interval,
)


def test_t_interval_matches_scipy():
    x = [0.91, 0.93, 0.96]
    mean, low, high, sd = t_interval(x)
    expected = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(np.mean(x))
    assert (low, high) == pytest.approx(expected)
    assert sd == pytest.approx(np.std(x, ddof=1))


def test_paired_over_seeds_is_scipys_paired_t():
    a, b = np.array([0.80, 0.83, 0.78, 0.81]), np.array([0.79, 0.80, 0.78, 0.77])
    found = over_seeds(a - b, paired=True)
    assert found.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert found.test == PAIRED_T_OVER_SEEDS and found.per_seed == pytest.approx(tuple(a - b))


def test_one_seed_has_no_interval_and_constant_differences_no_p():
    one = over_seeds([0.9], paired=True)
    assert (one.value, one.low, one.p_value) == (0.9, None, None)
    assert over_seeds([0.1, 0.1], paired=True).p_value is None


def test_bootstrap_p_value_never_zero_and_symmetric():
    assert bootstrap_p_value(np.full(9999, 1.0)) == pytest.approx(2 / 10000)
    reps = np.random.default_rng(0).normal(size=10_000)
    assert 0.8 < bootstrap_p_value(reps) <= 1.0
    assert samples_test([0.0], np.zeros(100)).p_value is None


def _auc(scores, labels):
    return roc_metrics(scores, labels, ())["auc"]


def _runs(rng, aucs, n=150):
    """One run per seed: members N(d, 1), non-members N(0, 1), true AUC Φ(d / √2)."""
    runs = []
    for auc in aucs:
        d = np.sqrt(2) * stats.norm.ppf(auc)
        y = np.r_[np.ones(n), np.zeros(n)]
        runs.append((y, np.r_[rng.normal(d, 1, n), rng.normal(0, 1, n)]))
    return runs


def test_seed_effect_breaks_the_pooled_interval_not_the_t_interval():
    """k = 3 seeds whose victims differ (sd of AUC across seeds 0.04): the pooled bootstrap
    (samples resampled, victims fixed) misses the mean AUC far more than 5 % of the time;
    the t-interval over seeds covers it about 95 % of the time."""
    rng = np.random.default_rng(1)
    trials, truth = 150, 0.8
    pooled_hits = t_hits = 0
    for trial in range(trials):
        runs = _runs(rng, truth + rng.normal(0, 0.04, size=3), n=100)
        scored = [ScoredRows.of(y, s) for y, s in runs]
        pooled = pooled_roc(scored, fprs=(), n_boot=100, seed=trial)["auc"]
        pooled_hits += pooled.low <= truth <= pooled.high
        ours = over_seeds([_auc(s, y) for y, s in runs])
        t_hits += ours.low <= truth <= ours.high
    assert pooled_hits / trials < 0.80
    assert t_hits / trials > 0.90


def test_seed_effect_stars_null_defenses_unless_tested_over_seeds():
    """No true difference between defense and undefended victim, but each seed's two victims
    differ by training (sd 0.04 of AUC): the sample-only paired bootstrap stars far more
    than 5 % of null cells; the paired t over seeds about 5 %."""
    rng = np.random.default_rng(2)
    trials = 150
    sample_stars = t_stars = 0
    for trial in range(trials):
        base = 0.75 + rng.normal(0, 0.04, size=3)
        defended = 0.75 + rng.normal(0, 0.04, size=3)
        runs = []
        for a, b in zip(defended, base, strict=True):
            (y, sa), (_, sb) = _runs(rng, [a, b], n=100)
            runs.append(ScoredRows.of(y, sa, sb))
        today = paired_roc(runs, fprs=(), n_boot=100, seed=trial)["auc"]
        sample_stars += today.significant
        diffs = [_auc(r.scores[0], r.labels) - _auc(r.scores[1], r.labels) for r in runs]
        t_stars += over_seeds(diffs, paired=True).p_value < 0.05
    assert sample_stars / trials > 0.20
    assert t_stars / trials < 0.10


def test_bounded_metrics_are_clipped_to_their_range():
    free = over_seeds([0.95, 0.99, 0.999])
    clipped = over_seeds([0.95, 0.99, 0.999], bounds=(0.0, 1.0))
    assert free.high > 1.0
    assert clipped.high == 1.0 and clipped.low == free.low and clipped.value == free.value
