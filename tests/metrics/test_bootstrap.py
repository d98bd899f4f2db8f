"""Bootstrap intervals: nominal coverage on scores of known AUC, groups, pooling and pairing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn import metrics as skm

from miabench.metrics.bootstrap import (
    ScoredRows,
    paired_mean,
    paired_roc,
    pooled_roc,
    resample_weights,
    roc_intervals,
    roc_replicates,
)
from miabench.metrics.roc import roc_metrics

FPRS = (0.001, 0.01, 0.1)


def _gaussians(rng: np.random.Generator, n1: int, n0: int, d: float) -> tuple[np.ndarray, ...]:
    """Members ~ N(d, 1), non-members ~ N(0, 1): the AUC is Phi(d / sqrt 2)."""
    labels = np.r_[np.ones(n1, dtype=int), np.zeros(n0, dtype=int)]
    return rng.normal(size=n1 + n0) + d * labels, labels


def test_replicates_equal_sklearn_on_the_duplicated_rows() -> None:
    rng = np.random.default_rng(0)
    scores, labels = _gaussians(rng, 300, 700, 1.0)
    scores = np.round(scores, 1)  # ties
    scores[:3], scores[-3:] = np.inf, -np.inf  # equal infinite scores are one threshold
    weights = np.vstack([np.ones(1000), rng.integers(0, 4, 1000)]).astype(float)
    reps = roc_replicates(scores, labels, weights, FPRS)
    for b, w in enumerate(weights):
        rows = np.repeat(np.arange(1000), w.astype(int))
        expected = roc_metrics(scores[rows], labels[rows], FPRS)
        finite = np.clip(scores[rows], -1e9, 1e9)
        assert expected["auc"] == pytest.approx(skm.roc_auc_score(labels[rows], finite))
        for name, value in expected.items():
            assert reps[name][b] == pytest.approx(value, abs=1e-12)


def test_stratified_resampling_keeps_the_class_counts_and_is_seeded() -> None:
    labels = np.r_[np.ones(30, dtype=int), np.zeros(70, dtype=int)]
    (w,) = resample_weights(labels, 50, np.random.default_rng(1))
    assert (w[:, labels == 1].sum(axis=1) == 30).all() and (w[:, labels == 0].sum(1) == 70).all()
    (again,) = resample_weights(labels, 50, np.random.default_rng(1))
    np.testing.assert_array_equal(w, again)
    scores = np.random.default_rng(2).normal(size=100) + labels
    first = roc_intervals(scores, labels, n_boot=200, seed=3)
    assert first == roc_intervals(scores, labels, n_boot=200, seed=3)
    assert first != roc_intervals(scores, labels, n_boot=200, seed=4)


def test_auc_interval_covers_the_true_auc_at_close_to_nominal_rate() -> None:
    rng = np.random.default_rng(5)
    d = 1.0
    true_auc = norm.cdf(d / np.sqrt(2))
    trials, covered = 200, 0
    for t in range(trials):
        scores, labels = _gaussians(rng, 60, 100, d)
        low, high = roc_intervals(scores, labels, fprs=(), n_boot=300, seed=t)["auc_ci95"]
        covered += low <= true_auc <= high
    assert 0.90 <= covered / trials <= 0.99


def test_group_interval_is_wider_than_the_sample_interval_under_group_effects() -> None:
    # null data where every identity shifts all its images: members and non-members are
    # exchangeable, but the test AUC moves with which identities were drawn
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 10)
    labels = (groups < 20).astype(int)
    covered, naive_covered, trials = 0, 0, 60
    for t in range(trials):
        scores = rng.normal(size=len(groups)) + 2 * rng.normal(size=40)[groups]
        by_group = roc_intervals(scores, labels, groups, fprs=(), n_boot=200, seed=t)
        by_sample = roc_intervals(scores, labels, None, fprs=(), n_boot=200, seed=t)
        low, high = by_group["auc_ci95"]
        assert low <= skm.roc_auc_score(labels, scores) <= high
        assert high - low > np.diff(by_sample["auc_ci95"])[0]
        assert by_group["bootstrap_unit"] == "group" and by_group["n_test_groups"] == 40
        covered += low <= 0.5 <= high
        naive_covered += by_sample["auc_ci95"][0] <= 0.5 <= by_sample["auc_ci95"][1]
    assert covered / trials >= 0.85
    assert naive_covered / trials < 0.6  # resampling images as if independent: far too narrow
    with pytest.raises(ValueError, match="both members and non-members"):
        roc_intervals([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0], ["a", "a", "b", "b"])


def test_unobservable_tpr_gets_no_interval() -> None:
    # 1000 non-members hold 10 false positives at 1 % FPR, 1 at 0.1 %
    scores, labels = _gaussians(np.random.default_rng(6), 50, 1000, 1.0)
    out = roc_intervals(scores, labels, n_boot=100)
    assert out["tpr_at_0.1pct_fpr_ci95"] is None and out["tpr_at_1pct_fpr_ci95"] is not None
    assert out["n_bootstrap"] == 100 and out["bootstrap_unit"] == "sample"
    assert roc_intervals(scores, labels, n_boot=0)["auc_ci95"] is None


def test_identical_scorers_are_never_significantly_different() -> None:
    rng = np.random.default_rng(7)
    for t in range(20):
        runs = [ScoredRows.of(lab, s, s) for s, lab in (_gaussians(rng, 40, 100, 0.5),) * 3]
        delta = paired_roc(runs, fprs=(0.1,), n_boot=200, seed=t)
        for estimate in delta.values():
            assert estimate.value == 0 and estimate.low == 0 and estimate.high == 0
            assert not estimate.significant and estimate.p_value == 1.0


def test_a_clearly_better_scorer_is_significant_and_a_null_one_rarely() -> None:
    rng = np.random.default_rng(8)
    scores, labels = _gaussians(rng, 200, 200, 1.0)
    noisy = scores + rng.normal(size=400) * 3  # same samples, much weaker attack
    delta = paired_roc([ScoredRows.of(labels, noisy, scores)], n_boot=500)
    assert delta["auc"].value < 0 and delta["auc"].significant and delta["auc"].high < 0
    # two independent scorers of equal strength: significant in about 5 % of trials
    hits = 0
    for t in range(40):
        s, y = _gaussians(rng, 60, 100, 1.0)
        other = s + rng.normal(size=160)
        base = y * 1.0 + rng.normal(size=160) * np.sqrt(2)  # same strength as `other`
        hits += paired_roc([ScoredRows.of(y, other, base)], n_boot=200, seed=t)["auc"].significant
    assert hits <= 6


def test_pooled_interval_over_seeds_is_narrower_than_one_seed() -> None:
    rng = np.random.default_rng(9)
    runs = [ScoredRows.of(lab, s) for s, lab in (_gaussians(rng, 100, 100, 1.0) for _ in range(3))]
    pooled = pooled_roc(runs, fprs=(0.01,), n_boot=400)["auc"]
    aucs = [skm.roc_auc_score(r.labels, r.scores[0]) for r in runs]
    assert pooled.value == pytest.approx(np.mean(aucs)) and pooled.n_runs == 3
    assert pooled.std == pytest.approx(np.std(aucs, ddof=1))
    single = roc_intervals(runs[0].scores[0], runs[0].labels, n_boot=400)["auc_ci95"]
    assert pooled.low < pooled.value < pooled.high
    assert pooled.high - pooled.low < 0.8 * (single[1] - single[0])
    tpr = pooled_roc(runs, fprs=(0.01,), n_boot=10)["tpr_at_1pct_fpr"]
    assert tpr.value is None and "100 test non-members < 1000" in tpr.note


def test_paired_mean_detects_a_utility_loss() -> None:
    rng = np.random.default_rng(10)
    a = rng.normal(20, 3, size=200)  # per-image PSNR of the undefended victim
    worse = a - 0.5 + rng.normal(0, 0.3, size=200)  # same images, a little worse
    estimate = paired_mean([(worse, a, None)], n_boot=500)
    assert estimate.value == pytest.approx(np.mean(worse - a)) and estimate.significant
    assert not paired_mean([(a, a, None)], n_boot=100).significant


def test_clustered_intervals_resample_whole_samples_of_a_matrix() -> None:
    """Leave-one-out pairs share their sample: whole samples are resampled, the interval
    covers the population AUC at about its nominal rate, and a signal-free matrix's covers 0.5."""
    from sklearn.metrics import roc_auc_score

    from miabench.metrics.clustered import clustered_roc_intervals

    rng = np.random.default_rng(0)

    def draw(n: int, k: int = 8, signal: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
        labels = np.zeros((n, k), dtype=int)
        for row in labels:  # each sample IN for half of the models
            row[rng.permutation(k)[: k // 2]] = 1
        # a per-sample effect shared by all its pairs, and a weak membership signal
        scores = rng.normal(0, 2.0, (n, 1)) + rng.normal(0, 1.0, (n, k)) + signal * labels
        return scores, labels

    big_s, big_y = draw(20000)
    truth = roc_auc_score(big_y.reshape(-1), big_s.reshape(-1))
    covered = 0
    for _ in range(60):
        scores, labels = draw(60)
        low, high = clustered_roc_intervals(scores, labels, fprs=(0.01,), n_boot=300)["auc_ci95"]
        covered += low <= truth <= high
    assert 0.85 <= covered / 60 <= 1.0, covered

    scores, labels = draw(120)
    out = clustered_roc_intervals(scores, labels, fprs=(0.01, 0.1), n_boot=200, seed=1)
    assert out["n_test_groups"] == out["n_samples"] == 120 and out["n_models"] == 8
    assert out["n_member_pairs"] == out["n_nonmember_pairs"] == 480
    assert out["n_nonmember_samples"] == 120
    # 120 distinct non-member samples resolve 10 % FPR, not 1 % (the 480 pairs are not
    # independent): the pooled TPR is refused with a note naming the samples
    assert out["tpr_at_10pct_fpr_ci95"] is not None and out["tpr_at_1pct_fpr_ci95"] is None
    assert out["tpr_at_1pct_fpr"] is None
    assert out["tpr_at_1pct_fpr_note"] == "not observable: 120 distinct non-member samples < 1000"
    low, high = out["tpr_at_1pct_fpr_reached_ci95"]
    assert 0 <= low <= high <= 1 and out["bootstrap_unit"] == "sample and model (two-way)"
    null, labels = draw(120, signal=0.0)
    low, high = clustered_roc_intervals(null, labels, n_boot=400, seed=2)["auc_ci95"]
    assert low < 0.5 < high
    # seeded: the same call gives the same interval
    assert clustered_roc_intervals(null, labels, n_boot=50, seed=3) == clustered_roc_intervals(
        null, labels, n_boot=50, seed=3
    )


def test_clustered_paired_difference_of_two_scorers_on_the_same_pairs() -> None:
    """best − free on one samples × models matrix: identical scorers give exactly 0, never
    significant; a scorer with a stronger membership signal is significantly ahead, its point
    difference is the difference of sklearn's pooled AUCs, and its interval covers the
    population difference."""
    from sklearn.metrics import roc_auc_score

    from miabench.metrics.clustered import clustered_paired_roc

    rng = np.random.default_rng(4)
    n, k = 150, 6
    labels = np.zeros((n, k), dtype=int)
    for row in labels:
        row[rng.permutation(k)[: k // 2]] = 1
    shared = rng.normal(0, 1.0, (n, 1))  # a per-sample effect both scorers see
    weak = shared + rng.normal(0, 1.0, (n, k)) + 0.3 * labels
    strong = shared + rng.normal(0, 1.0, (n, k)) + 1.5 * labels

    same = clustered_paired_roc(weak, weak, labels, n_boot=200)
    assert same["auc"].value == 0 and same["auc"].low == same["auc"].high == 0
    assert not same["auc"].significant

    delta = clustered_paired_roc(strong, weak, labels, n_boot=400, seed=1)
    flat = labels.reshape(-1)
    expected = roc_auc_score(flat, strong.reshape(-1)) - roc_auc_score(flat, weak.reshape(-1))
    assert delta["auc"].value == pytest.approx(expected, abs=1e-12)
    assert delta["auc"].significant and delta["auc"].low > 0
    assert delta["auc"].p_value == pytest.approx(2 / 401)  # no replicate at or below 0
    assert same["auc"].p_value == 1.0
    # 150 distinct non-member samples resolve 10 % FPR but not 1 % (450 pairs would)
    ten = clustered_paired_roc(strong, weak, labels, fprs=(0.1,), n_boot=50)
    assert ten["tpr_at_10pct_fpr"].value is not None
    assert delta["tpr_at_1pct_fpr"].value is None and "150 distinct non-member samples" in (
        delta["tpr_at_1pct_fpr"].note
    )
    with pytest.raises(ValueError, match="one \\(N, K\\)"):
        clustered_paired_roc(strong, weak[:, :3], labels)
