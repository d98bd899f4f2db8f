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


def rmia_marginal(
    reference_p: ArrayLike,
    membership: ArrayLike | None = None,
    a: float | None = None,
    balance: bool = True,
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
        balance: the same number of IN and OUT references per sample (``min(n_in, n_out)``),
            as :func:`~miabench.attacks.reference.lira.lira_online`; the equal weighting of the
            halves already removes the count from the online mean, this also equalises its
            noise.

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
    use_in, use_out = _sides(mem, balance)
    n_in, n_out = use_in.sum(axis=1), use_out.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = np.where(use_in, ref, 0.0).sum(axis=1) / n_in
        mean_out = np.where(use_out, ref, 0.0).sum(axis=1) / n_out
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


def rmia(
    target_p: ArrayLike,
    reference_p: ArrayLike,
    membership: ArrayLike | None = None,
    population: ArrayLike | None = None,
    gamma: float = 1.0,
    a: float | str | None = None,
    balance: bool = True,
) -> np.ndarray:
    """RMIA: the fraction of population samples z that x dominates by a likelihood ratio ≥ γ.

    ``LR(x, z) = (Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z))`` with Pr(·) from :func:`rmia_marginal`
    (online when ``a`` is None, offline with scaling ``a`` otherwise), and
    ``score(x) = #{z ∈ Z \\ {x}: LR(x, z) ≥ γ} / |Z \\ {x}|``.

    Vectorised: with ``r = log(Pr(·|θ)/Pr(·))``, ``LR(x, z) ≥ γ ⟺ r_z ≤ r_x − log γ``, so the
    count is one ``searchsorted`` of every x into the sorted population ratios,
    O((N + Z) log Z) time and O(N + Z) memory instead of an N × Z matrix. It follows that, for
    a fixed population, the score is a monotone function of ``r_x`` (the population's empirical
    CDF at ``r_x − log γ``): γ and Z change ties and the score's scale, not the ranking.

    Args:
        target_p: (N,) Pr(x|θ_target) > 0 (e.g.
            :func:`~miabench.attacks.reference.transforms.likelihood_from_loss`).
        reference_p: (N, M) Pr(x|θ_m) > 0 under M ≥ 1 reference models.
        membership: (N, M) bool, or None (offline: every reference is OUT; needs ``a``).
        population: indices (or an (N,) bool mask) of the rows used as z; default all rows.
            A row is never compared with itself.
        gamma: the dominance threshold γ > 0 on LR(x, z).
        a: offline scaling in [0, 1]; None = online (needs IN and OUT references);
            ``"tune"`` = offline with ``a`` chosen by :func:`tune_rmia_a` on the references
            alone (one of them attacked by the others, as the authors tune it; needs
            ``membership`` and M >= 2), so nothing about the target enters ``a``.
        balance: equal IN/OUT reference counts per sample (:func:`rmia_marginal`).

    Returns:
        (N,) float64 scores in [0, 1].
    """
    t = _positive("target_p", target_p, 1)
    ref = _positive("reference_p", reference_p, 2)
    _check_target(t, ref, "target_p", "reference_p")
    if not gamma > 0:
        raise ValueError(f"RMIA gamma must be > 0, got {gamma}")
    if isinstance(a, str):
        if a != "tune":
            raise ValueError(f"RMIA a must be a number in [0, 1], None or 'tune', got {a!r}")
        if membership is None:
            raise ValueError("RMIA a='tune' needs the references' membership to tune on")
        a, _ = tune_rmia_a(ref, membership, gamma=gamma)
    n = t.shape[0]
    ratio = np.log(t) - np.log(rmia_marginal(ref, membership, a, balance))
    if population is None:
        pop = np.arange(n)
    else:
        pop = np.asarray(population)
        if pop.dtype == np.bool_:
            if pop.shape != (n,):
                raise ValueError(f"population mask has shape {pop.shape}, expected ({n},)")
            pop = np.flatnonzero(pop)
        elif pop.ndim != 1 or not np.issubdtype(pop.dtype, np.integer):
            raise ValueError("population must be a 1-D integer index array or an (N,) bool mask")
        elif pop.size and (pop.min() < -n or pop.max() >= n):
            raise ValueError(
                f"population indices must be in [0, {n}), got {pop.min()}..{pop.max()}"
            )
        pop = np.unique(pop % n)
    threshold = ratio - math.log(gamma)
    counts = np.searchsorted(np.sort(ratio[pop]), threshold, side="right")
    in_pop = np.zeros(n, dtype=bool)
    in_pop[pop] = True
    # x's own z was counted iff r_x <= r_x - log γ (γ <= 1): remove it, and from the denominator.
    counts = counts - (in_pop & (ratio <= threshold))
    size = pop.size - in_pop
    if np.any(size == 0):
        raise ValueError("RMIA population leaves some sample with no other sample to compare to")
    return counts / size


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
