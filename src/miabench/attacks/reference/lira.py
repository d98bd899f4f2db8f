"""LiRA (Carlini et al., S&P 2022) online and offline, per sample and dense (per pixel).

Online: per-sample Gaussians of the statistic under the reference models that trained on the
sample (IN) and those that did not (OUT); the score is the log likelihood ratio of the
target's statistic. Offline: OUT only, a one-sided test against the OUT Gaussian. Dense LiRA
(new here) fits per-(sample, pixel) Gaussians and sums the per-pixel scores over the image.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from miabench.attacks.reference._gaussians import (
    Center,
    FixVariance,
    _fit_in_out,
    _offline_stat,
    _online_llr,
)
from miabench.attacks.reference._inputs import (
    Balance,
    _check_target,
    _finite,
    _membership,
    _prepare,
)

__all__ = ["lira_online", "lira_offline", "pixel_lira", "pixel_lira_offline"]


def _queries(
    target: ArrayLike, reference: ArrayLike, membership: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target (N, Q), reference (N, Q, M) and membership (N, M), with Q = 1 for scalar input."""
    t_ndim = np.ndim(target)
    if t_ndim not in (1, 2):
        raise ValueError(f"target must be (N,) or (N, queries), got shape {np.shape(target)}")
    if membership is None:
        shape = np.shape(reference)
        membership = np.zeros((shape[0], shape[-1]), dtype=bool)
    t, r, mem = _prepare(target, reference, membership, t_ndim, ("target", "reference"))
    if t_ndim == 1:
        return t[:, None], r[:, None, :], mem
    return t, r, mem


def lira_online(
    target: ArrayLike,
    reference: ArrayLike,
    membership: ArrayLike,
    fix_variance: FixVariance = False,
    eps: float = 1e-30,
    *,
    center: Center = "median",
    balance: Balance = True,
    ddof: int = 1,
) -> np.ndarray:
    """Online LiRA: per-sample IN/OUT Gaussian log likelihood ratio of the target's statistic.

    ``score(x) = log N(t_x; μ_in(x), σ_in(x)) − log N(t_x; μ_out(x), σ_out(x))``, the means
    being per-sample medians (as the LiRA code) over the reference models that did (IN) or did
    not (OUT) train on x. With several queries per sample (augmentations: ``target`` (N, Q),
    ``reference`` (N, Q, M)) each query has its own Gaussians and the score is the mean of the
    per-query log ratios, as LiRA's ``plot.py``.

    Missing estimates never give NaN: a sample with fewer than two IN (OUT) references uses the
    global IN (OUT) std; a sample with no IN reference gets ``μ_in = μ_out + δ`` and one with no
    OUT reference ``μ_out = μ_in − δ``, δ being the mean of all IN entries minus the mean of all
    OUT entries (see docs/reference_attacks.md).

    Args:
        target: (N,) or (N, Q) the target model's statistic per sample (and query), higher =
            more member-like (e.g. :func:`~miabench.attacks.reference.transforms.logit_from_loss`).
        reference: (N, M) or (N, Q, M) the same statistic under M reference models.
        membership: (N, M) bool, True where reference model m trained on sample n.
        fix_variance: ``False``/``"none"``: per-sample stds; ``True``/``"pooled"``: one σ_in and
            one σ_out pooled within samples; ``"global"``: LiRA's ``plot.py``, one σ = the std
            of every IN entry, used for both sides (over all queries at once).
        eps: added to every σ so identical references stay finite.
        center: ``"median"`` (the LiRA code) or ``"mean"`` per-sample location estimate.
        balance: which references each sample uses
            (:func:`~miabench.attacks.reference._inputs._sides`): ``True``/``"global"`` the same
            IN and OUT counts for every sample (LiRA's ``plot.py``), ``"sample"``
            ``min(n_in, n_out)`` per sample, ``False`` every reference.
        ddof: delta degrees of freedom of every std (1: unbiased variance; LiRA's ``np.std``
            is 0).

    Returns:
        (N,) float64 scores, higher = more likely a member.

    Raises:
        ValueError: shapes disagree, a statistic is not finite, or no reference is IN (or OUT)
            for any sample.
    """
    t, r, mem = _queries(target, reference, membership)
    g = _fit_in_out(r, mem, fix_variance, center, True, balance, ddof, pool_groups=True)
    return _online_llr(t, g, eps).mean(axis=1)


def lira_offline(
    target: ArrayLike,
    reference: ArrayLike,
    membership: ArrayLike | None = None,
    fix_variance: FixVariance = True,
    eps: float = 1e-30,
    *,
    center: Center = "median",
    balance: Balance = True,
    ddof: int = 1,
    tail: str = "one",
) -> np.ndarray:
    """Offline LiRA: a test of the target's statistic against the OUT Gaussian only.

    ``tail="one"`` (default, the paper): ``score(x) = −log Pr[Z ≥ t_x]`` with
    ``Z ~ N(μ_out(x), σ_out(x))``, a monotone transform of the paper's ``1 − Pr[Z > t_x]``.
    ``tail="two"`` (LiRA's ``plot.py``): ``score(x) = −log N(t_x; μ_out, σ_out)``, so a statistic
    far *below* the OUT mean also counts as membership. IN references are used only for a
    sample that has no OUT reference (``μ_out = μ_in − δ``, as :func:`lira_online`). Several
    queries: the mean of the per-query scores.

    Args:
        target: (N,) or (N, Q) the target model's statistic, higher = more member-like.
        reference: (N, M) or (N, Q, M) the same statistic under M reference models.
        membership: (N, M) bool, True where reference m trained on sample n; None means no
            reference trained on any sample (all OUT), the offline setting proper.
        fix_variance: as :func:`lira_online` (default ``True``, σ_out pooled within samples, as
            the paper recommends offline with few references; ``"global"``: the std of every
            OUT entry, as ``plot.py``).
        eps: added to every σ.
        center: ``"median"`` or ``"mean"`` per-sample location estimate.
        balance: as :func:`lira_online` (OUT counts only matter here).
        ddof: as :func:`lira_online`.
        tail: ``"one"`` (paper) or ``"two"`` (authors' code).

    Returns:
        (N,) float64 scores, higher = more likely a member.
    """
    t, r, mem = _queries(target, reference, membership)
    g = _fit_in_out(r, mem, fix_variance, center, False, balance, ddof, pool_groups=True)
    return _offline_stat(t, g, eps, tail).mean(axis=1)


# Elements (samples x pixels x models) per block of dense fits: ~32 MB per float64 temporary.
_DENSE_BLOCK = 1 << 22


def _dense(
    target_maps: ArrayLike,
    reference_maps: ArrayLike,
    membership: ArrayLike,
    online: bool,
    fix_variance: FixVariance,
    eps: float,
    center: Center,
    balance: Balance,
) -> np.ndarray:
    """Dense LiRA, summed over pixels, fitted in blocks of pixels.

    Every estimate (pooled σ, δ, the fallbacks) is per pixel, so blocks give exactly the
    all-at-once result while bounding memory: the fits hold a few (N, P, M) float64
    temporaries, 1.6 GB at once for 10 000 x 64 x 64.
    """
    t = _finite("target_maps", target_maps, 2)
    r = np.asarray(reference_maps)
    if r.ndim != 3:
        raise ValueError(f"reference_maps must have 3 dimension(s), got shape {r.shape}")
    _check_target(t, r, "target_maps", "reference_maps")
    mem = _membership(membership, r.shape[0], r.shape[-1], f"reference_maps {r.shape}")
    n, p, m = r.shape
    step = max(1, _DENSE_BLOCK // max(1, n * m))
    total = np.zeros(n)
    for lo in range(0, p, step):
        block = _finite(f"reference_maps[:, {lo}:{lo + step}]", r[:, lo : lo + step], 3)
        g = _fit_in_out(block, mem, fix_variance, center, need_in=online, balance=balance)
        score = _online_llr if online else _offline_stat
        total += score(t[:, lo : lo + step], g, eps).sum(axis=1)
    return total


def pixel_lira(
    target_maps: ArrayLike,
    reference_maps: ArrayLike,
    membership: ArrayLike,
    fix_variance: FixVariance = True,
    eps: float = 1e-30,
    *,
    center: Center = "median",
    balance: Balance = True,
) -> np.ndarray:
    """Dense online LiRA: per-(sample, pixel) IN/OUT Gaussians, log ratios summed over pixels.

    The sum is the image's log likelihood ratio if pixels were independent given membership;
    neighbouring pixels are correlated, so the sum over-counts evidence (LRs overconfident) but
    the ranking is what the metrics use. Pool pixels into patches first to weaken the
    dependence and the noise of per-pixel fits (docs/reference_attacks.md). With P = 1 this is
    exactly :func:`lira_online`.

    Args:
        target_maps: (N, P) the target's per-pixel (or per-patch) statistic, higher = more
            member-like.
        reference_maps: (N, P, M) the same under M reference models.
        membership: (N, M) bool.
        fix_variance: σ_in and σ_out per pixel pooled over samples (default) instead of per
            (sample, pixel).
        eps: added to every σ.
        center: ``"median"`` or ``"mean"``.
        balance: equal IN/OUT reference counts per sample, as :func:`lira_online`.

    Returns:
        (N,) float64 scores.
    """
    return _dense(target_maps, reference_maps, membership, True, fix_variance, eps, center, balance)


def pixel_lira_offline(
    target_maps: ArrayLike,
    reference_maps: ArrayLike,
    membership: ArrayLike | None = None,
    fix_variance: FixVariance = True,
    eps: float = 1e-30,
    *,
    center: Center = "median",
    balance: Balance = True,
) -> np.ndarray:
    """Dense offline LiRA: per-pixel one-sided OUT tests combined by summing ``−log p``.

    Summing the per-pixel ``−log Pr[Z ≥ t]`` is Fisher's combination of one-sided p-values,
    valid as a test when pixels are independent. With P = 1 this is :func:`lira_offline`.

    Args:
        target_maps: (N, P).
        reference_maps: (N, P, M).
        membership: (N, M) bool or None (all references OUT).
        fix_variance: σ_out per pixel pooled over samples (default).
        eps: added to every σ.
        center: ``"median"`` or ``"mean"``.
        balance: equal IN/OUT reference counts per sample, as :func:`lira_online`.

    Returns:
        (N,) float64 scores.
    """
    if membership is None:
        shape = np.shape(reference_maps)
        membership = np.zeros((shape[0], shape[-1]), dtype=bool)
    return _dense(
        target_maps, reference_maps, membership, False, fix_variance, eps, center, balance
    )
