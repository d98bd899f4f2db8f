"""RMIA (Zarifzadeh, Liu & Shokri, ICML 2024): likelihood ratios against a population.

The score of x is the fraction of population samples z that x dominates:
``(Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z)) ≥ γ``, with Pr(·) averaged over reference models
(:func:`rmia_marginal`); offline, its scaling ``a`` is set or tuned on the references alone
(:func:`tune_rmia_a`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score

from miabench.attacks.reference._inputs import (
    Balance,
    _check_target,
    _finite,
    _membership,
    _sides,
)

__all__ = ["rmia", "rmia_marginal", "tune_rmia_a"]


def _positive(name: str, values: ArrayLike, ndim: int) -> np.ndarray:
    arr = _finite(name, values, ndim)
    if np.any(arr <= 0):
        raise ValueError(
            f"{name} must be > 0 (a likelihood Pr(x|θ)); {int((arr <= 0).sum())} entries are "
            "<= 0 (did exp(-loss/T) underflow? raise the temperature)"
        )
    return arr


def _side_mean(ref: np.ndarray, use: np.ndarray, trim: float) -> np.ndarray:
    """Per-row mean of the masked entries, or their trimmed mean (``trim`` cut at each end).

    Written out because ``scipy.stats.trim_mean`` takes no mask and the rows hold different
    numbers of references; it cuts ``floor(trim * c)`` entries at each end of a row of c, as
    scipy does (tested equal to it row by row).
    """
    count = use.sum(axis=1)
    if trim == 0:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(use, ref, 0.0).sum(axis=1) / count
    ordered = np.sort(np.where(use, ref, np.inf), axis=1)
    cut = np.floor(trim * count).astype(np.int64)
    col = np.arange(ref.shape[1])[None, :]
    kept = (col >= cut[:, None]) & (col < (count - cut)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(kept, ordered, 0.0).sum(axis=1) / kept.sum(axis=1)


def rmia_marginal(
    reference_p: ArrayLike,
    membership: ArrayLike | None = None,
    a: float | None = None,
    balance: Balance = True,
    trim: float = 0.0,
) -> np.ndarray:
    """RMIA's Pr(x): the likelihood of each sample averaged over reference models.

    - Online (``membership`` given, ``a`` None): ``Pr(x) = ½(mean_IN(x) + mean_OUT(x))``, the
      paper's average over reference models with the IN and OUT halves weighted equally even
      when a sample's split is not exactly balanced.
    - Offline (``a`` given): only OUT references, ``Pr(x) = ½((1+a)·mean_OUT(x) + (1−a))``; a = 1
      is the plain OUT mean. ``membership=None`` means every reference is OUT.

    RMIA's offline formula says ``Pr_IN = a·Pr_OUT + (1−a)``, i.e. ``1 − Pr_IN = a(1 − Pr_OUT)``.
    A sample that lacks one side gets it from that line with ``a`` fitted on the data,
    ``a_fit = mean over IN entries of (1 − p) / mean over OUT entries of (1 − p)``: online, an
    only-OUT sample gets ``Pr_IN = 1 − a_fit(1 − mean_OUT)``; online and offline, an only-IN
    sample gets ``Pr_OUT = 1 − (1 − mean_IN)/a_fit`` (both floored at the smallest observed
    likelihood). The line is fitted rather than taken from the caller's ``a`` because the
    caller's ``a`` is a choice of Pr(x), not an estimate of how IN and OUT likelihoods relate:
    inverting with a wrong ``a`` makes the only-IN samples' scores systematically different
    (with one reference in a balanced design, AUC 0.35 on data with no signal at a = 0.3).

    Args:
        reference_p: (N, M) Pr(x|θ_m) > 0, probability-like (at most ~1).
        membership: (N, M) bool, or None (all OUT).
        a: offline scaling in [0, 1], or None for the online estimate.
        balance: which references each sample averages, as
            :func:`~miabench.attacks.reference.lira.lira_online` (default: the same IN and OUT
            counts for every sample); the equal weighting of the halves already removes the
            count from the online mean, this also makes its noise independent of membership.
        trim: proportion cut at each end before averaging a side over its references
            (``scipy.stats.trim_mean``'s ``proportiontocut``; 0 = the plain mean, the
            authors' research code uses 0.2).

    Returns:
        (N,) Pr(x) > 0.
    """
    ref = _positive("reference_p", reference_p, 2)
    n, m = ref.shape
    mem = (
        np.zeros((n, m), dtype=bool)
        if membership is None
        else _membership(membership, n, m, f"reference_p {ref.shape}")
    )
    if a is not None and not 0.0 <= a <= 1.0:
        raise ValueError(f"RMIA offline scaling a must be in [0, 1], got {a}")
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    use_in, use_out = _sides(mem, balance)
    n_in, n_out = use_in.sum(axis=1), use_out.sum(axis=1)
    mean_in = _side_mean(ref, use_in, trim)
    mean_out = _side_mean(ref, use_out, trim)
    if not (~mem).any():
        raise ValueError("RMIA needs OUT references: every reference trained on every sample")
    if a is None and not mem.any():
        raise ValueError(
            "online RMIA needs IN references (membership has no True); pass `a` for the "
            "offline attack (a = 1: Pr(x) is the plain OUT mean)"
        )
    # The line 1 - Pr_IN = a_fit (1 - Pr_OUT), fitted on the data (ratio of the mean gaps), fills
    # the side a sample lacks. Floors: a_fit > 0 so it inverts; the filled likelihoods at the
    # smallest observed one, so an extrapolation never gives Pr(x) <= 0.
    a_fit = 1.0
    if mem.any():
        gap_out = float((1.0 - ref[use_out]).mean())
        if gap_out > 0:
            a_fit = max(float((1.0 - ref[use_in]).mean()) / gap_out, 1e-12)
    floor = ref.min()
    with np.errstate(invalid="ignore", divide="ignore"):
        out_from_in = np.maximum(1.0 - (1.0 - mean_in) / a_fit, floor)
    mean_out = np.where(n_out > 0, mean_out, out_from_in)
    if a is not None:
        return 0.5 * ((1.0 + a) * mean_out + (1.0 - a))
    in_from_out = np.maximum(1.0 - a_fit * (1.0 - mean_out), floor)
    mean_in = np.where(n_in > 0, mean_in, in_from_out)
    return 0.5 * (mean_in + mean_out)


def _population_rows(population: ArrayLike | None, n: int) -> np.ndarray:
    """Sorted unique row indices of z from indices or an (N,) bool mask (None: all rows)."""
    if population is None:
        return np.arange(n)
    pop = np.asarray(population)
    if pop.dtype == np.bool_:
        if pop.shape != (n,):
            raise ValueError(f"population mask has shape {pop.shape}, expected ({n},)")
        return np.flatnonzero(pop)
    if pop.ndim != 1 or not np.issubdtype(pop.dtype, np.integer):
        raise ValueError("population must be a 1-D integer index array or an (N,) bool mask")
    if pop.size and (pop.min() < -n or pop.max() >= n):
        raise ValueError(f"population indices must be in [0, {n}), got {pop.min()}..{pop.max()}")
    return np.unique(pop % n)


#: rows of x per block of the (x, z, query) vote, ~32 MB of booleans
_VOTE_BLOCK = 1 << 25


def rmia(
    target_p: ArrayLike,
    reference_p: ArrayLike,
    membership: ArrayLike | None = None,
    population: ArrayLike | None = None,
    gamma: float = 1.0,
    a: float | str | None = None,
    balance: Balance = True,
    trim: float = 0.0,
) -> np.ndarray:
    """RMIA: the fraction of population samples z that x dominates by a likelihood ratio ≥ γ.

    ``LR(x, z) = (Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z))`` with Pr(·) from :func:`rmia_marginal`
    (online when ``a`` is None, offline with scaling ``a`` otherwise), and
    ``score(x) = #{z ∈ Z_x: LR(x, z) ≥ γ} / |Z_x|``.

    Every x is compared with ``|Z| − 1`` population samples: ``Z_x = Z \\ {x}`` when x is in Z,
    and Z without its last row otherwise (that row is chosen by index, not by value, so it is
    an exchangeable draw). Members and non-members of a target are then scored on the same
    scale: with Z = the target's non-members (the authors' z), a non-member's count runs over
    the other |Z| − 1 and a member's over |Z| − 1 draws from the same distribution, so with no
    signal their scores have one distribution (ties included).

    Vectorised: with ``r = log(Pr(·|θ)/Pr(·))``, ``LR(x, z) ≥ γ ⟺ r_z ≤ r_x − log γ``, so the
    count is one ``searchsorted`` of every x into the sorted population ratios,
    O((N + Z) log Z) time and O(N + Z) memory instead of an N × Z matrix. It follows that, for
    a fixed population, the score is a monotone function of ``r_x`` (the population's empirical
    CDF at ``r_x − log γ``): γ and Z change ties and the score's scale, not the ranking.

    Several queries per sample (``target_p`` (N, Q), ``reference_p`` (N, Q, M)): each query has
    its own ratio, and x dominates z when a strict majority of queries says so (the authors'
    majority vote); computed in blocks of x over the (x, z, query) array.

    Args:
        target_p: (N,) or (N, Q) Pr(x|θ_target) > 0 (e.g.
            :func:`~miabench.attacks.reference.transforms.likelihood_from_loss`).
        reference_p: (N, M) or (N, Q, M) Pr(x|θ_m) > 0 under M ≥ 1 reference models.
        membership: (N, M) bool, or None (offline: every reference is OUT; needs ``a``).
        population: indices (or an (N,) bool mask) of the rows used as z; default all rows.
            The authors draw z from data the target did not train on: the reference stage
            passes the target's non-members (``miabench.pipeline.reference``).
        gamma: the dominance threshold γ > 0 on LR(x, z) (the authors' research code: 2).
        a: offline scaling in [0, 1] (the authors' research code: 0.33); None = online
            (needs IN and OUT references); ``"tune"`` = offline with ``a`` chosen by
            :func:`tune_rmia_a` on the references alone (nothing about the target enters it).
        balance: which references Pr(x) averages (:func:`rmia_marginal`).
        trim: trimmed mean over references in Pr(x) (:func:`rmia_marginal`).

    Returns:
        (N,) float64 scores in [0, 1].
    """
    t_ndim = np.ndim(target_p)
    if t_ndim not in (1, 2):
        raise ValueError(f"target_p must be (N,) or (N, queries), got shape {np.shape(target_p)}")
    t = _positive("target_p", target_p, t_ndim)
    ref = _positive("reference_p", reference_p, t_ndim + 1)
    _check_target(t, ref, "target_p", "reference_p")
    if not gamma > 0:
        raise ValueError(f"RMIA gamma must be > 0, got {gamma}")
    if t_ndim == 1:
        t, ref = t[:, None], ref[:, None, :]
    if isinstance(a, str):
        if a != "tune":
            raise ValueError(f"RMIA a must be a number in [0, 1], None or 'tune', got {a!r}")
        if membership is None:
            raise ValueError("RMIA a='tune' needs the references' membership to tune on")
        a, _ = tune_rmia_a(ref[:, 0, :], membership, gamma=gamma)
    n, n_queries = t.shape
    ratio = np.stack(
        [
            np.log(t[:, q]) - np.log(rmia_marginal(ref[:, q], membership, a, balance, trim))
            for q in range(n_queries)
        ],
        axis=1,
    )  # (N, Q)
    pop = _population_rows(population, n)
    if pop.size < 2:
        raise ValueError("RMIA population leaves some sample with no other sample to compare to")
    in_pop = np.zeros(n, dtype=bool)
    in_pop[pop] = True
    # the one z each x is not compared with: itself if it is in Z, else Z's last row
    left_out = np.where(in_pop, np.arange(n), pop[-1])
    threshold = ratio - math.log(gamma)
    if n_queries == 1:
        r, thr = ratio[:, 0], threshold[:, 0]
        counts = np.searchsorted(np.sort(r[pop]), thr, side="right")
        counts = counts - (r[left_out] <= thr)
    else:
        counts = np.empty(n, dtype=np.int64)
        step = max(1, _VOTE_BLOCK // max(1, pop.size * n_queries))
        z_ratio = ratio[pop]  # (Z, Q)
        for lo in range(0, n, step):
            thr = threshold[lo : lo + step]
            votes = (z_ratio[None, :, :] <= thr[:, None, :]).sum(axis=2)
            dominated = 2 * votes > n_queries
            own = 2 * (ratio[left_out[lo : lo + step]] <= thr).sum(axis=1) > n_queries
            counts[lo : lo + step] = dominated.sum(axis=1) - own
    return counts / (pop.size - 1)


def tune_rmia_a(
    reference_p: ArrayLike,
    membership: ArrayLike,
    grid: Sequence[float] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2)),
    pseudo_target: int = 0,
    gamma: float = 1.0,
) -> tuple[float, dict[float, float]]:
    """Choose RMIA's offline ``a`` by attacking one reference model with the others.

    As the RMIA authors do (a pair of reference models), reference ``pseudo_target`` plays the
    target, its membership column is the ground truth, and the remaining references attack
    it offline for every ``a`` in ``grid``; the ``a`` with the highest AUC is returned. Only
    reference models are used, so nothing about the real target leaks into ``a``.

    Args:
        reference_p: (N, M) likelihoods under M >= 2 reference models.
        membership: (N, M) bool.
        grid: candidate values of ``a`` in [0, 1].
        pseudo_target: column used as the pseudo-target.
        gamma: RMIA's γ during tuning.

    Returns:
        ``(best_a, {a: AUC})``; ties go to the first ``a`` of the grid.
    """
    ref = _positive("reference_p", reference_p, 2)
    n, m = ref.shape
    mem = _membership(membership, n, m, f"reference_p {ref.shape}")
    if m < 2:
        raise ValueError("tuning a needs at least 2 reference models (a pseudo-target and one)")
    labels = mem[:, pseudo_target]
    if labels.all() or not labels.any():
        raise ValueError(f"reference {pseudo_target} has no members or no non-members to tune on")
    rest = np.r_[0:pseudo_target, pseudo_target + 1 : m]
    aucs = {
        float(a): float(
            roc_auc_score(
                labels, rmia(ref[:, pseudo_target], ref[:, rest], mem[:, rest], gamma=gamma, a=a)
            )
        )
        for a in grid
    }
    best = max(aucs, key=aucs.__getitem__)
    return best, aucs
