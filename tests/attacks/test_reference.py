"""Reference-model attacks (LiRA, RMIA, dense LiRA) on synthetic statistics with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm, spearmanr
from sklearn.metrics import roc_auc_score

from miabench.attacks.reference import lira
from miabench.attacks.reference.evaluation import leave_one_out, reference_subsets
from miabench.attacks.reference.lira import (
    lira_offline,
    lira_online,
    pixel_lira,
    pixel_lira_offline,
)
from miabench.attacks.reference.rmia import rmia, rmia_marginal, tune_rmia_a
from miabench.attacks.reference.transforms import (
    likelihood_from_loss,
    log_error,
    logit_from_loss,
)


def _population(n: int, m: int, seed: int, hetero: bool = True):
    """Known per-sample IN/OUT Gaussians; column 0 is the target, 1..m the references.

    Per-sample OUT means vary widely (what a global threshold cannot undo), membership shifts
    each sample by its own amount, and with ``hetero`` each sample has its own σ_out and a
    smaller σ_in (members are fitted more consistently).
    """
    rng = np.random.default_rng(seed)
    mu_out = rng.normal(0.0, 2.0, n)
    mu_in = mu_out + rng.uniform(0.5, 2.0, n)
    sd_out = rng.uniform(0.5, 1.5, n) if hetero else np.ones(n)
    sd_in = sd_out * (rng.uniform(0.6, 1.0, n) if hetero else 1.0)
    member = rng.random((n, m + 1)) < 0.5
    noise = rng.normal(size=(n, m + 1))
    stats = np.where(
        member, mu_in[:, None] + sd_in[:, None] * noise, mu_out[:, None] + sd_out[:, None] * noise
    )
    true_llr = norm.logpdf(stats[:, 0], mu_in, sd_in) - norm.logpdf(stats[:, 0], mu_out, sd_out)
    return stats[:, 0], stats[:, 1:], member[:, 1:], member[:, 0], true_llr


# --------------------------------------------------------------------------- LiRA


def test_online_lira_recovers_the_true_likelihood_ratio_ranking() -> None:
    t, ref, mem, y, true_llr = _population(3000, 256, seed=0, hetero=True)
    score = lira_online(t, ref, mem)
    bayes = roc_auc_score(y, true_llr)
    assert abs(roc_auc_score(y, score) - bayes) < 0.01
    assert spearmanr(score, true_llr).statistic >= 0.99
    # Not a trivially easy problem: a global threshold on the statistic is far weaker.
    assert roc_auc_score(y, t) < bayes - 0.1


def test_online_lira_fixed_variance_is_near_bayes_with_64_references() -> None:
    t, ref, mem, y, true_llr = _population(3000, 64, seed=1, hetero=False)
    # Bernoulli membership drawn independently of the target: no balancing is needed
    score = lira_online(t, ref, mem, fix_variance=True, balance=False)
    assert abs(roc_auc_score(y, score) - roc_auc_score(y, true_llr)) < 0.01


@pytest.mark.parametrize("balance", [False, "sample", "global"])
def test_online_lira_matches_a_per_sample_loop(balance) -> None:
    rng = np.random.default_rng(2)
    t, ref = rng.normal(size=20), rng.normal(size=(20, 9))
    mem = rng.random((20, 9)) < 0.5
    mem[:, :4] = [True, False, True, False]  # at least two references of each side
    n_in = mem.sum(axis=1)
    expected, means = [], []
    for i in range(20):
        ins, outs = np.flatnonzero(mem[i]), np.flatnonzero(~mem[i])
        if balance == "sample":  # the first min(n_in, n_out) of each side
            keep = min(ins.size, outs.size)
            ins, outs = ins[:keep], outs[:keep]
        elif balance == "global":  # the first (min over samples) of each side
            ins, outs = ins[: n_in.min()], outs[: (9 - n_in).min()]
        ins, outs = ref[i, ins], ref[i, outs]
        expected.append(
            norm.logpdf(t[i], np.median(ins), ins.std(ddof=1))
            - norm.logpdf(t[i], np.median(outs), outs.std(ddof=1))
        )
        means.append(
            norm.logpdf(t[i], ins.mean(), ins.std(ddof=1))
            - norm.logpdf(t[i], outs.mean(), outs.std(ddof=1))
        )
    got = lira_online(t, ref, mem, balance=balance)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    got = lira_online(t, ref, mem, center="mean", balance=balance)
    np.testing.assert_allclose(got, means, rtol=1e-10)
    if balance == "global":
        np.testing.assert_array_equal(got, lira_online(t, ref, mem, center="mean"))


def test_fixed_variance_pools_within_sample_spread() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(30, 8)) + rng.normal(0, 10, (30, 1))  # big between-sample spread
    t = rng.normal(size=30)
    mem = np.zeros((30, 8), dtype=bool)
    mem[:, :4] = True
    dev_in = ref[:, :4] - ref[:, :4].mean(axis=1, keepdims=True)
    dev_out = ref[:, 4:] - ref[:, 4:].mean(axis=1, keepdims=True)
    sd_in = np.sqrt((dev_in**2).sum() / (30 * 3))
    sd_out = np.sqrt((dev_out**2).sum() / (30 * 3))
    expected = norm.logpdf(t, np.median(ref[:, :4], axis=1), sd_in) - norm.logpdf(
        t, np.median(ref[:, 4:], axis=1), sd_out
    )
    np.testing.assert_allclose(lira_online(t, ref, mem, fix_variance=True), expected, rtol=1e-10)
    # The offline score is the one-sided OUT tail, -log Pr[Z >= t].
    offline = -np.log(norm.sf(t, np.median(ref[:, 4:], axis=1), sd_out))
    np.testing.assert_allclose(lira_offline(t, ref, mem), offline, rtol=1e-9, atol=1e-15)


def test_offline_lira_is_weaker_than_online_but_well_above_chance() -> None:
    t, ref, mem, y, _ = _population(3000, 64, seed=4, hetero=True)
    online = roc_auc_score(y, lira_online(t, ref, mem))
    offline = roc_auc_score(y, lira_offline(t, ref, mem))
    offline_out_only = roc_auc_score(y, lira_offline(t, ref[:, :32], None))
    assert 0.7 < offline < online
    assert 0.7 < offline_out_only < online


def test_offline_lira_keeps_resolution_in_the_member_tail() -> None:
    # 10 and 12 OUT standard deviations above: 1 - Pr[Z > t] is 1.0 for both in float64.
    ref = np.tile(np.linspace(-1.0, 1.0, 8), (2, 1))
    sd = ref[0].std(ddof=1)
    score = lira_offline(np.array([10 * sd, 12 * sd]), ref)
    assert np.all(np.isfinite(score)) and score[1] > score[0] > 40


def test_samples_without_in_or_out_references_get_finite_scores() -> None:
    t, ref, mem, y, _ = _population(400, 6, seed=5)
    mem[:50] = True  # no OUT reference
    mem[50:100] = False  # no IN reference
    mem[100:150, 1:] = False  # exactly one IN reference: per-sample σ_in falls back to global
    mem[100:150, 0] = True
    for fix in (False, True):
        for fn in (lira_online, lira_offline):
            s = fn(t, ref, mem, fix_variance=fix)
            assert np.all(np.isfinite(s))
    # The no-IN fallback puts μ_in at μ_out + δ (mean IN entry minus mean OUT entry).
    delta = ref[mem].mean() - ref[~mem].mean()
    s = lira_online(t, ref, mem, fix_variance=True, balance=False)
    dev = [(ref[i, mem[i]] - ref[i, mem[i]].mean()) for i in range(400) if mem[i].sum() >= 2]
    sd_in = np.sqrt(sum((d**2).sum() for d in dev) / sum(d.size - 1 for d in dev))
    dev = [(ref[i, ~mem[i]] - ref[i, ~mem[i]].mean()) for i in range(400) if (~mem[i]).sum() >= 2]
    sd_out = np.sqrt(sum((d**2).sum() for d in dev) / sum(d.size - 1 for d in dev))
    mu_out = np.median(ref[50:100], axis=1)
    expected = norm.logpdf(t[50:100], mu_out + delta, sd_in) - norm.logpdf(
        t[50:100], mu_out, sd_out
    )
    np.testing.assert_allclose(s[50:100], expected, rtol=1e-10)


def test_lira_with_a_single_reference_model() -> None:
    t, ref, mem, y, _ = _population(3000, 1, seed=6, hetero=False)
    for fix in (False, True):
        s = lira_online(t, ref, mem, fix_variance=fix)
        assert np.all(np.isfinite(s)) and roc_auc_score(y, s) > 0.6
    s = lira_offline(t, ref, mem)
    assert np.all(np.isfinite(s)) and roc_auc_score(y, s) > 0.6


def test_bad_inputs_raise_clear_errors() -> None:
    t, ref, mem, _, _ = _population(10, 4, seed=7)
    with pytest.raises(ValueError, match=r"membership has shape \(10, 3\)"):
        lira_online(t, ref, mem[:, :3])
    with pytest.raises(ValueError, match="membership has shape"):
        rmia(np.full(10, 0.5), np.full((10, 4), 0.5), mem.T)
    with pytest.raises(ValueError, match="target has shape"):
        lira_offline(t[:5], ref, mem)
    with pytest.raises(ValueError, match="non-finite"):
        lira_online(t, np.where(mem, np.nan, ref), mem)
    with pytest.raises(ValueError, match="use lira_offline"):
        lira_online(t, ref, np.zeros_like(mem))
    with pytest.raises(ValueError, match="boolean"):
        lira_online(t, ref, mem * 2)
    with pytest.raises(ValueError, match="must be > 0"):
        rmia(np.zeros(10), np.full((10, 4), 0.5), mem)
    with pytest.raises(ValueError, match="pass `a`"):
        rmia(np.full(10, 0.5), np.full((10, 4), 0.5))
    with pytest.raises(ValueError, match="reference_maps"):
        pixel_lira(np.zeros((10, 3)), np.zeros((10, 2, 4)), mem)


# --------------------------------------------------------------------------- RMIA


def _likelihoods(n: int, m: int, seed: int):
    t, ref, mem, y, _ = _population(n, m, seed, hetero=False)
    sig = 1.0 / (1.0 + np.exp(-np.c_[t, ref]))  # a probability per model, as RMIA expects
    return sig[:, 0], sig[:, 1:], mem, y


def _brute_rmia(target_p, px, population, gamma):
    # x is compared with Z without x, or (x not in Z) without Z's last row: |Z| - 1 either way
    lr = target_p / px
    last = max(population)
    return np.array(
        [
            np.mean(
                [
                    lr[i] / lr[j] >= gamma
                    for j in population
                    if j != (i if i in population else last)
                ]
            )
            for i in range(len(lr))
        ]
    )


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("a", [None, 0.0, 0.3, 1.0])
def test_rmia_equals_the_pairwise_definition(gamma: float, a: float | None) -> None:
    target_p, ref_p, mem, _ = _likelihoods(60, 5, seed=8)
    px = rmia_marginal(ref_p, mem, a)
    all_rows = np.arange(60)
    np.testing.assert_array_equal(
        rmia(target_p, ref_p, mem, gamma=gamma, a=a), _brute_rmia(target_p, px, all_rows, gamma)
    )
    pop = np.arange(0, 60, 3)  # a subset that contains some of the scored samples
    np.testing.assert_array_equal(
        rmia(target_p, ref_p, mem, population=pop, gamma=gamma, a=a),
        _brute_rmia(target_p, px, pop, gamma),
    )


def test_rmia_marginal_formulas() -> None:
    rng = np.random.default_rng(9)
    ref = rng.uniform(0.1, 0.9, (40, 6))
    mem = np.zeros((40, 6), dtype=bool)
    mem[:, :2] = True
    mean_in, mean_out = ref[:, :2].mean(axis=1), ref[:, 2:].mean(axis=1)
    balanced_out = ref[:, 2:4].mean(axis=1)  # "sample": as many OUT as IN, the first ones
    np.testing.assert_allclose(rmia_marginal(ref, mem, balance=False), 0.5 * (mean_in + mean_out))
    # "global" (default): every sample has 2 IN and 4 OUT, constants, so all are kept
    np.testing.assert_allclose(rmia_marginal(ref, mem), 0.5 * (mean_in + mean_out))
    sample = {"balance": "sample"}
    np.testing.assert_allclose(rmia_marginal(ref, mem, **sample), 0.5 * (mean_in + balanced_out))
    np.testing.assert_allclose(rmia_marginal(ref, mem, a=1.0, **sample), balanced_out)
    np.testing.assert_allclose(rmia_marginal(ref, mem, a=1.0, balance=False), mean_out)
    np.testing.assert_allclose(rmia_marginal(ref, mem, a=0.0, **sample), 0.5 * (balanced_out + 1))
    np.testing.assert_allclose(rmia_marginal(ref, None, a=1.0), ref.mean(axis=1))
    np.testing.assert_allclose(
        rmia_marginal(ref, mem, a=0.4, balance=False), 0.5 * (1.4 * mean_out + 0.6), rtol=1e-12
    )
    # Samples with one side only fill the other from RMIA's line 1 - P_in = a (1 - P_out),
    # with a fitted on the data as the ratio of the mean gaps to 1.
    mem[0] = True  # only IN
    mem[1] = False  # only OUT
    use_in = mem & (np.cumsum(mem, axis=1) <= np.where(mem.all(1) | ~mem.any(1), 6, 2)[:, None])
    use_out = ~mem & (np.cumsum(~mem, 1) <= np.where(mem.all(1) | ~mem.any(1), 6, 2)[:, None])
    a_fit = (1 - ref[use_in]).mean() / (1 - ref[use_out]).mean()
    p_out = max(1.0 - (1.0 - ref[0].mean()) / a_fit, ref.min())
    assert rmia_marginal(ref, mem, a=0.5, **sample)[0] == pytest.approx(0.5 * (1.5 * p_out + 0.5))
    assert rmia_marginal(ref, mem, **sample)[0] == pytest.approx(0.5 * (ref[0].mean() + p_out))
    p_in = 1.0 - a_fit * (1.0 - ref[1].mean())
    assert rmia_marginal(ref, mem, **sample)[1] == pytest.approx(0.5 * (p_in + ref[1].mean()))


def test_rmia_gamma_only_moves_the_threshold() -> None:
    target_p, ref_p, mem, _ = _likelihoods(300, 4, seed=10)
    scores = [rmia(target_p, ref_p, mem, gamma=g) for g in (0.25, 0.5, 1.0, 2.0, 4.0)]
    for lo, hi in zip(scores[1:], scores[:-1], strict=True):
        assert np.all(lo <= hi)  # a larger γ never raises a score
    assert np.all(rmia(target_p, ref_p, mem, gamma=1e-12) == 1.0)
    assert np.all(rmia(target_p, ref_p, mem, gamma=1e12) == 0.0)
    # With γ = 1 over all samples, the score is the rank of the ratio: a permutation of k/(N-1).
    ranks = np.sort(scores[2] * 299)
    np.testing.assert_allclose(ranks, np.arange(300))


def test_rmia_beats_chance_with_one_reference_and_online_with_many() -> None:
    target_p, ref_p, mem, y = _likelihoods(3000, 16, seed=11)
    one = rmia(target_p, ref_p[:, :1], mem[:, :1])
    one_offline = rmia(target_p, ref_p[:, :1], None, a=0.5)
    assert np.all(np.isfinite(one)) and np.all(np.isfinite(one_offline))
    assert roc_auc_score(y, one) > 0.6 and roc_auc_score(y, one_offline) > 0.6
    # a Bernoulli matrix independent of the target: every reference may be used
    many = roc_auc_score(y, rmia(target_p, ref_p, mem, balance=False))
    assert many > roc_auc_score(y, one) and many > roc_auc_score(y, target_p) + 0.1


def test_tuned_a_transfers_from_a_reference_to_the_target() -> None:
    target_p, ref_p, mem, y = _likelihoods(4000, 5, seed=16)
    best, aucs = tune_rmia_a(ref_p, mem)
    assert set(aucs) == {round(0.1 * i, 1) for i in range(11)}
    assert aucs[best] == max(aucs.values())
    refs, ref_mem = ref_p[:, 1:], mem[:, 1:]  # what tuning attacked the pseudo-target with
    on_target = {a: roc_auc_score(y, rmia(target_p, refs, ref_mem, a=a)) for a in aucs}
    assert on_target[best] > max(on_target.values()) - 0.01
    assert on_target[best] > min(on_target.values()) + 0.01  # the choice of a matters here
    with pytest.raises(ValueError, match="at least 2"):
        tune_rmia_a(ref_p[:, :1], mem[:, :1])
    # a="tune" inside the attack: the same a, chosen from the references it is given
    tuned = rmia(target_p, ref_p, mem, a="tune")
    np.testing.assert_array_equal(tuned, rmia(target_p, ref_p, mem, a=best))
    with pytest.raises(ValueError, match="membership"):
        rmia(target_p, ref_p, None, a="tune")
    with pytest.raises(ValueError, match="'tune'"):
        rmia(target_p, ref_p, mem, a="auto")


# --------------------------------------------------------------------------- dense LiRA


def test_pixel_lira_with_one_pixel_is_scalar_lira() -> None:
    t, ref, mem, _, _ = _population(200, 12, seed=12)
    for fix in (False, True):
        np.testing.assert_allclose(
            pixel_lira(t[:, None], ref[:, None, :], mem, fix_variance=fix),
            lira_online(t, ref, mem, fix_variance=fix),
            rtol=0,
            atol=0,
        )
        np.testing.assert_allclose(
            pixel_lira_offline(t[:, None], ref[:, None, :], mem, fix_variance=fix),
            lira_offline(t, ref, mem, fix_variance=fix),
            rtol=0,
            atol=0,
        )


def test_pixel_lira_finds_signal_confined_to_a_few_pixels() -> None:
    rng = np.random.default_rng(13)
    n, p, m = 1000, 64, 64
    base = rng.normal(0.0, 2.0, (n, p, 1))  # per-(sample, pixel) OUT means
    shift = np.zeros((1, p, 1))
    shift[0, :4] = 1.0  # membership moves 4 of 64 pixels only
    member = rng.random((n, m + 1)) < 0.5
    maps = base + shift * member[:, None, :] + rng.normal(size=(n, p, m + 1))
    t, ref, mem, y = maps[..., 0], maps[..., 1:], member[:, 1:], member[:, 0]
    dense = roc_auc_score(y, pixel_lira(t, ref, mem))
    scalar = roc_auc_score(y, lira_online(t.mean(axis=1), ref.mean(axis=1), mem, True))
    assert dense > scalar + 0.1
    assert roc_auc_score(y, pixel_lira_offline(t, ref, mem)) > 0.6


def test_pixel_lira_in_pixel_blocks_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(18)
    maps = rng.normal(size=(50, 7, 6)).astype(np.float32)  # float32, as a signal cache may hold
    mem = rng.random((50, 6)) < 0.5
    mem[:3] = True  # samples without OUT references take the fallback in every block
    whole = [f(maps[..., 0], maps[..., 1:], mem[:, 1:]) for f in (pixel_lira, pixel_lira_offline)]
    monkeypatch.setattr(lira, "_DENSE_BLOCK", 1)  # one pixel per block
    for f, expected in zip((pixel_lira, pixel_lira_offline), whole, strict=True):
        np.testing.assert_allclose(f(maps[..., 0], maps[..., 1:], mem[:, 1:]), expected, rtol=1e-12)


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("attack", "kwargs", "prob"),
    [(lira_online, {}, False), (lira_offline, {}, False), (rmia, {"gamma": 2.0}, True)],
)
def test_leave_one_out_column_is_the_attack_on_that_model(attack, kwargs, prob) -> None:
    t, ref, mem, y, _ = _population(80, 5, seed=14)
    stats, membership = np.c_[t, ref], np.c_[y, mem]
    if prob:
        stats = 1.0 / (1.0 + np.exp(-stats))
    scores = leave_one_out(attack, stats, membership, **kwargs)
    assert scores.shape == (80, 6)
    for k in (0, 3, 5):
        rest = [j for j in range(6) if j != k]
        np.testing.assert_array_equal(
            scores[:, k], attack(stats[:, k], stats[:, rest], membership[:, rest], **kwargs)
        )


def test_leave_one_out_on_maps() -> None:
    rng = np.random.default_rng(15)
    maps, mem = rng.normal(size=(30, 4, 5)), rng.random((30, 5)) < 0.5
    mem[:, :2] = [True, False]
    scores = leave_one_out(pixel_lira, maps, mem)
    np.testing.assert_array_equal(
        scores[:, 2], pixel_lira(maps[..., 2], maps[..., [0, 1, 3, 4]], mem[:, [0, 1, 3, 4]])
    )
    with pytest.raises(ValueError, match="membership has shape"):
        leave_one_out(pixel_lira, maps, mem[:, :4])


@pytest.mark.parametrize("k", [4, 8])
def test_balanced_leave_one_out_without_signal_is_at_chance(k: int) -> None:
    # Every sample IN for exactly half of the K models, statistics blind to membership. In
    # leave-one-out the remaining references hold K/2 - 1 IN exactly when the target is IN,
    # so any fit whose noise depends on the counts would separate members from non-members.
    rng = np.random.default_rng(17)
    n = 2000
    mem = np.argsort(rng.random((n, k)), axis=1) < k // 2
    stats = rng.normal(0.0, 2.0, (n, 1)) + rng.normal(size=(n, k))
    maps = rng.normal(0.0, 2.0, (n, 3, 1)) + rng.normal(size=(n, 3, k))
    prob = 1.0 / (1.0 + np.exp(-stats))
    runs = [
        (lira_online, stats, {}),
        (lira_online, stats, {"fix_variance": True}),
        (lira_offline, stats, {}),
        (rmia, prob, {}),
        (rmia, prob, {"a": 0.3}),
        (pixel_lira, maps, {}),
        (pixel_lira_offline, maps, {}),
    ]
    for attack, x, kwargs in runs:
        auc = roc_auc_score(mem.ravel(), leave_one_out(attack, x, mem, **kwargs).ravel())
        assert abs(auc - 0.5) < 0.03, (attack.__name__, kwargs, auc)
    if k == 4:  # the same fits on unequal counts do separate them: what balance prevents
        leaky = leave_one_out(lira_online, stats, mem, balance=False)
        assert abs(roc_auc_score(mem.ravel(), leaky.ravel()) - 0.5) > 0.08


def test_reference_subsets_are_seeded_distinct_and_in_range() -> None:
    subsets = reference_subsets(16, sizes=(1, 2, 4, 8, 16), n_draws=4, seed=3)
    again = reference_subsets(16, sizes=(1, 2, 4, 8, 16), n_draws=4, seed=3)
    other = reference_subsets(16, sizes=(1, 2, 4, 8, 16), n_draws=4, seed=4)
    assert set(subsets) == {1, 2, 4, 8, 16}
    for size, draws in subsets.items():
        assert len(draws) == (1 if size == 16 else 4)
        assert len({tuple(d) for d in draws}) == len(draws)
        for d, e in zip(draws, again[size], strict=True):
            np.testing.assert_array_equal(d, e)
            assert len(set(d.tolist())) == size and d.min() >= 0 and d.max() < 16
    assert any(not np.array_equal(d, e) for d, e in zip(subsets[4], other[4], strict=True))
    with pytest.raises(ValueError, match="not in"):
        reference_subsets(4, sizes=(8,))


def test_transforms() -> None:
    loss = np.array([1e-300, 1e-20, 0.1, 0.6931471805599453, 5.0, 50.0])
    p = np.exp(-loss[2:5])
    np.testing.assert_allclose(logit_from_loss(loss[2:5]), np.log(p / (1 - p)), rtol=1e-12)
    out = logit_from_loss(np.r_[0.0, loss])
    assert np.all(np.isfinite(out)) and np.all(np.diff(out) < 0)  # lower loss = more member-like
    assert out[2] == pytest.approx(-np.log(1e-20), rel=1e-12)  # p -> 1: logit -> -log(loss)
    assert out[-1] == pytest.approx(-50.0, rel=1e-12)  # p -> 0: logit -> log p = -loss
    np.testing.assert_allclose(log_error([0.5, 0.1]), [np.log(2), np.log(10)])
    assert np.isfinite(log_error([0.0]))[0]
    np.testing.assert_allclose(likelihood_from_loss([0.2], temperature=0.1), [np.exp(-2.0)])
    with pytest.raises(ValueError, match="raise the temperature"):
        likelihood_from_loss([800.0], temperature=0.1)
    with pytest.raises(ValueError, match=">= 0"):
        logit_from_loss([-0.1])
