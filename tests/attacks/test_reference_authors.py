"""Reference attacks against the authors' formulas and against data with no signal.

The oracle functions below are this project's own transcription of the published formulas
(LiRA: tensorflow/privacy ``research/mi_lira_2021/plot.py``; RMIA: ml_privacy_meter
``modules/mia/attacks/rmia.py`` and the paper), written as plain per-sample loops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy.stats import binomtest, norm, trim_mean
from sklearn.metrics import roc_auc_score, roc_curve

from miabench.attacks.reference._inputs import _sides
from miabench.attacks.reference.lira import lira_offline, lira_online
from miabench.attacks.reference.rmia import rmia, rmia_marginal

CONF = Path(__file__).parents[2] / "conf/attack/reference.yaml"


def _lira_matrix(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """LiRA's membership matrix: every sample IN for exactly floor(K/2) of the K models."""
    return np.argsort(rng.random((n, k)), axis=1) < k // 2


# --------------------------------------------------------------------------- oracles


def _authors_lira(keep, scores, check, fix_variance, offline):
    """LiRA as plot.py: keep (M, N), scores (M, N, Q), check (N, Q) -> member score (N,).

    Per sample, the first in_size IN and out_size OUT references (the minima over samples),
    median locations, np.std (ddof 0) per sample or over every entry; the score is the mean
    over queries of the log ratio (online) or of minus the OUT log density (offline).
    """
    n = keep.shape[1]
    dat_in = [scores[keep[:, j], j, :] for j in range(n)]
    dat_out = [scores[~keep[:, j], j, :] for j in range(n)]
    in_size = min(len(d) for d in dat_in)
    out_size = min(len(d) for d in dat_out)
    dat_in = np.array([d[:in_size] for d in dat_in])
    dat_out = np.array([d[:out_size] for d in dat_out])
    mean_in, mean_out = np.median(dat_in, 1), np.median(dat_out, 1)
    if offline:
        std_out = np.std(dat_out) if fix_variance else np.std(dat_out, 1)
        return -norm.logpdf(check, mean_out, std_out + 1e-30).mean(1)
    if fix_variance:
        std_in = std_out = np.std(dat_in)  # plot.py takes the OUT sigma from the IN entries
    else:
        std_in, std_out = np.std(dat_in, 1), np.std(dat_out, 1)
    llr = norm.logpdf(check, mean_in, std_in + 1e-30) - norm.logpdf(
        check, mean_out, std_out + 1e-30
    )
    return llr.mean(1)


def _authors_rmia(px_target, px_ref, z_target, z_ref, a, gamma, online, trim=0.0):
    """RMIA pairwise: fraction of z with (p(x|θ)/p(x)) / (p(z|θ)/p(z)) > γ.

    Online, p(·) is the mean over every reference (half of them IN for each sample);
    offline, ((1 + a) mean_OUT + (1 − a)) / 2 over references that never saw x or z.
    """

    def marginal(ref):
        mean = trim_mean(ref, trim, axis=1) if trim else ref.mean(axis=1)
        return mean if online else (1 + a) / 2 * mean + (1 - a) / 2

    ratio_x = px_target / marginal(px_ref)
    ratio_z = z_target / marginal(z_ref)
    return np.array([np.mean(rx / ratio_z > gamma) for rx in ratio_x])


@pytest.mark.parametrize("offline", [False, True])
@pytest.mark.parametrize("fix_variance", [False, True])
@pytest.mark.parametrize("queries", [1, 3])
def test_lira_equals_the_authors_formulas(offline, fix_variance, queries) -> None:
    rng = np.random.default_rng(30)
    n, m = 300, 9  # odd: unequal IN and OUT counts across samples
    mem = _lira_matrix(n, m + 1, rng)[:, 1:]  # LiRA's matrix with the target column left out
    base = rng.normal(0, 2, (n, queries, 1))
    stats = base + rng.normal(size=(n, queries, m + 1)) + 0.5 * np.c_[mem, mem[:, :1]][:, None]
    target, ref = stats[..., 0], stats[..., 1:]
    expected = _authors_lira(mem.T, ref.transpose(2, 0, 1), target, fix_variance, offline)
    options = {"fix_variance": "global" if fix_variance else False, "ddof": 0}
    t, r = (target[:, 0], ref[:, 0]) if queries == 1 else (target, ref)
    if offline:
        got = lira_offline(t, r, mem, tail="two", **options)
    else:
        got = lira_online(t, r, mem, **options)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("online", "a"), [(True, None), (False, 0.33), (False, 0.0)])
@pytest.mark.parametrize("gamma", [1.0, 2.0])
@pytest.mark.parametrize("trim", [0.0, 0.2])
def test_rmia_equals_the_authors_formulas(online, a, gamma, trim) -> None:
    rng = np.random.default_rng(31)
    n_x, n_z, m = 200, 120, 10
    p = rng.uniform(0.05, 0.95, (n_x + n_z, m + 1))
    # references in complementary pairs: every audited sample is IN for exactly half of them
    half = rng.random((n_x + n_z, m // 2)) < 0.5
    mem = np.repeat(half, 2, axis=1)
    mem[:, 1::2] = ~mem[:, 1::2]
    # online, the z rows are population rows with the same paired references (the pipeline's
    # z); offline, no reference trained on x or z
    if not online:
        mem[:] = False  # offline: the references never trained on x or z
    target_p, ref_p = p[:, 0], p[:, 1:]
    z = np.arange(n_x, n_x + n_z)
    got = rmia(target_p, ref_p, mem, population=z, gamma=gamma, a=a, trim=trim)[:n_x]
    # Every x is compared with |Z| - 1 rows (docstring of rmia); an x outside Z drops Z's last
    # row, so the authors' formula is evaluated on Z without it.
    zz = z[:-1]
    if online:
        # the pairs make every sample's IN and OUT counts equal, where the mean over every
        # reference is the paper's ½(mean_IN + mean_OUT); the trimmed mean is per side
        def marg(rows):
            use_in, use_out = _sides(mem[rows], "global")
            return 0.5 * (
                trim_mean(ref_p[rows][use_in].reshape(len(rows), -1), trim, axis=1)
                + trim_mean(ref_p[rows][use_out].reshape(len(rows), -1), trim, axis=1)
            )

        x_rows = np.arange(n_x)
        expected = np.array(
            [
                np.mean((target_p[i] / marg(x_rows)[i]) / (target_p[zz] / marg(zz)) > gamma)
                for i in range(n_x)
            ]
        )
        np.testing.assert_allclose(rmia_marginal(ref_p[:n_x], mem[:n_x], trim=trim), marg(x_rows))
    else:
        expected = _authors_rmia(
            target_p[:n_x], ref_p[:n_x], target_p[zz], ref_p[zz], a, gamma, online=False, trim=trim
        )
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_trimmed_side_mean_equals_scipy_row_by_row() -> None:
    rng = np.random.default_rng(32)
    ref = rng.uniform(0.05, 0.95, (50, 11))
    mem = rng.random((50, 11)) < 0.5
    mem[:, :2] = [True, False]
    use_in, use_out = _sides(mem, "none")
    got = rmia_marginal(ref, mem, balance=False, trim=0.2)
    expected = [
        0.5 * (trim_mean(ref[i, use_in[i]], 0.2) + trim_mean(ref[i, use_out[i]], 0.2))
        for i in range(50)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="trim"):
        rmia_marginal(ref, mem, trim=0.5)


def test_rmia_majority_vote_over_queries() -> None:
    rng = np.random.default_rng(33)
    n, q, m = 40, 3, 4
    t = rng.uniform(0.1, 0.9, (n, q))
    ref = rng.uniform(0.1, 0.9, (n, q, m))
    mem = np.zeros((n, m), dtype=bool)
    mem[:, :2] = True
    ratio = np.stack([t[:, j] / rmia_marginal(ref[:, j], mem) for j in range(q)], axis=1)
    for gamma in (1.0, 2.0):
        expected = [
            np.mean([(ratio[i] / ratio[j] >= gamma).sum() * 2 > q for j in range(n) if j != i])
            for i in range(n)
        ]
        np.testing.assert_allclose(rmia(t, ref, mem, gamma=gamma), expected, atol=1e-12)
    # one query: the majority vote is the single comparison
    np.testing.assert_array_equal(rmia(t[:, :1], ref[:, :1], mem), rmia(t[:, 0], ref[:, 0], mem))


# --------------------------------------------------------------------------- z


def test_rmia_z_of_the_pipeline_excludes_the_target_members() -> None:
    from miabench.pipeline.reference import as_targets

    seen = []

    def spy(target, reference, membership, population=None):
        seen.append(population)
        return np.zeros(len(target))

    rng = np.random.default_rng(34)
    mem = _lira_matrix(50, 5, rng)
    stats = rng.uniform(0.1, 0.9, (50, 5))
    refs = [np.array([j for j in range(5) if j != k]) for k in range(5)]
    as_targets(spy, stats, mem, refs, z="target_nonmembers")
    for k, population in enumerate(seen):
        np.testing.assert_array_equal(population, ~mem[:, k])  # z = what model k did not see
    seen.clear()
    as_targets(spy, stats, mem, refs, z="all")
    assert all(p is None for p in seen)


def test_rmia_with_z_the_target_nonmembers_scores_members_alike() -> None:
    # No signal: the members' and non-members' scores have one distribution, because both
    # are compared with |Z| - 1 rows of Z (continuous likelihoods; with 4 tied levels the same
    # runs give 0.507 ± 0.0024, left open in docs/reference_pipeline.md).
    rng = np.random.default_rng(35)
    aucs = []
    for _ in range(200):
        n, m = 200, 4
        mem = _lira_matrix(n, m + 1, rng)
        p = rng.uniform(0.1, 1.0, (n, m + 1))
        y = mem[:, 0]
        s = rmia(p[:, 0], p[:, 1:], mem[:, 1:], population=~y)
        aucs.append(roc_auc_score(y, s))
    # 200 runs of ~100 vs ~100: the mean AUC's standard error is about 0.003
    assert abs(np.mean(aucs) - 0.5) < 0.01, np.mean(aucs)


# --------------------------------------------------------------------------- no signal


def _tpr_at(scores, labels, fpr):
    f, t, _ = roc_curve(labels, scores)
    return t[np.searchsorted(f, fpr, side="right") - 1]


def _no_signal_runs(k: int, n: int, seed: int):
    """Every attack of conf/attack/reference.yaml, every model in turn as the target."""
    rng = np.random.default_rng(seed)
    mem = _lira_matrix(n, k, rng)
    stats = rng.normal(0.0, 2.0, (n, 1)) + rng.normal(size=(n, k))
    views = {
        "error": stats,
        "statistic": stats,
        "likelihood": 1.0 / (1.0 + np.exp(-stats)),
        "statistic_map": rng.normal(0.0, 2.0, (n, 2, 1)) + rng.normal(size=(n, 2, k)),
    }
    conf = OmegaConf.load(CONF)
    for name, spec in conf.items():
        if not OmegaConf.is_dict(spec) or "score" not in spec:
            continue
        score = instantiate(spec.score)
        x = views[spec.view]
        out = np.empty((n, k))
        for j in range(k):
            rest = [c for c in range(k) if c != j]
            extra = {"population": ~mem[:, j]} if "z" in spec else {}
            out[:, j] = score(x[..., j], x[..., rest], mem[:, rest], **extra)
        yield name, out, mem


@pytest.mark.parametrize("k", [16, 17])
def test_every_attack_is_at_chance_without_signal(k: int) -> None:
    # LiRA's matrix (each sample IN for floor(K/2) models), statistics blind to membership,
    # every model as the target: TPR at FPR x must be x (binomial test on the members), AUC
    # 0.5 (Mann-Whitney null standard error), for odd and even K. A sample's K pairs share
    # its references, so the tests count one target's members and non-members (n / K of the
    # pairs), not every pair as independent.
    for name, scores, mem in _no_signal_runs(k, n=1500, seed=40 + k):
        s, y = scores.ravel(), mem.ravel()
        n1, n0 = int(y.sum()) // k, int((~y).sum()) // k
        auc = roc_auc_score(y, s)
        se = np.sqrt((n1 + n0 + 1) / (12 * n1 * n0))
        assert abs(auc - 0.5) < 4 * se, (name, k, auc)
        for x in (0.01, 0.1):
            tpr = _tpr_at(s, y, x)
            p = binomtest(round(tpr * n1), n1, x).pvalue
            assert p > 1e-4, (name, k, x, tpr)


def test_per_sample_balance_leaks_with_an_odd_number_of_models() -> None:
    # What the default balance prevents: with K = 17 on LiRA's matrix, per-sample
    # min(n_in, n_out) keeps 7 per side for members and 8 for non-members.
    rng = np.random.default_rng(41)
    n, k = 1500, 17
    mem = _lira_matrix(n, k, rng)
    stats = rng.normal(0.0, 2.0, (n, 1)) + rng.normal(size=(n, k))
    tprs = {}
    for balance in ("sample", "global"):
        out = np.empty((n, k))
        for j in range(k):
            rest = [c for c in range(k) if c != j]
            out[:, j] = lira_online(
                stats[:, j], stats[:, rest], mem[:, rest], fix_variance=False, balance=balance
            )
        tprs[balance] = _tpr_at(out.ravel(), mem.ravel(), 0.01)
    n1 = int(mem.sum())
    assert binomtest(round(tprs["sample"] * n1), n1, 0.01).pvalue < 1e-4, tprs
    assert binomtest(round(tprs["global"] * n1), n1, 0.01).pvalue > 1e-4, tprs
