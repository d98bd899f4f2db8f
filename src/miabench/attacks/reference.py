"""Reference-model attacks as pure array functions: LiRA, RMIA and a dense (per-pixel) LiRA.

Every function here reads cached per-sample statistics of a target model and of M reference
models, plus the samples × models membership matrix (True = the model trained on the sample),
and returns one score per sample, higher = more likely a member of the target's training set.
Nothing here touches a victim, a file or a random state except :func:`reference_subsets`.

Algorithms (read from the authors' code and papers, re-derived here):

- LiRA, Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022
  (tensorflow/privacy ``research/mi_lira_2021``). Online: per-sample Gaussians of the
  statistic under the reference models that trained on the sample (IN) and those that did not
  (OUT); the score is the log likelihood ratio of the target's statistic. Offline: OUT only, a
  one-sided test of the target's statistic against the OUT Gaussian.
- RMIA, Zarifzadeh, Liu & Shokri, "Low-Cost High-Power Membership Inference Attacks", ICML
  2024 (privacytrustlab/ml_privacy_meter ``modules/mia/attacks/rmia.py``). The score of x is
  the fraction of population samples z that x dominates:
  ``(Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z)) ≥ γ``, with Pr(·) averaged over reference models.
- Dense LiRA (new here): per-(sample, pixel) IN/OUT Gaussians, per-pixel log likelihood
  ratios summed over the image under an independence assumption.

How each fallback, estimator and transform is chosen, and why, is in docs/reference_attacks.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import log_ndtr
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

__all__ = [
    "lira_online",
    "lira_offline",
    "pixel_lira",
    "pixel_lira_offline",
    "rmia",
    "rmia_marginal",
    "tune_rmia_a",
    "logit_from_loss",
    "log_error",
    "likelihood_from_loss",
    "leave_one_out",
    "reference_subsets",
]

Center = Literal["median", "mean"]


# --------------------------------------------------------------------------- input checks


def _finite(name: str, values: ArrayLike, ndim: int) -> np.ndarray:
    """float64 array of the given rank with only finite entries, else a ValueError naming it."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} has {bad} non-finite value(s) (NaN or inf)")
    return arr


def _membership(membership: ArrayLike, n: int, m: int, of: str) -> np.ndarray:
    """Boolean (n, m) membership matrix; accepts 0/1 integers, refuses anything else."""
    arr = np.asarray(membership)
    if arr.shape != (n, m):
        raise ValueError(
            f"membership has shape {arr.shape} but {of} needs (samples, models) = ({n}, {m})"
        )
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError("membership must be boolean (or 0/1): True = model trained on sample")
        arr = arr.astype(bool)
    return arr


def _sides(membership: np.ndarray, balance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Which references each sample's IN and OUT fits use, as two (N, M) masks.

    With ``balance``, a sample with references on both sides uses the same number on each,
    ``c = min(n_in, n_out)`` (the first c of each side in column order); a sample with one side
    only uses all of it. Why: when the target is itself a column of a per-sample balanced
    membership matrix (leave-one-out, or a target drawn with the references), the count of
    IN references is ``K/2 − 1`` exactly when the target trained on the sample. Every
    finite-sample estimate (median noise, std noise, the σ fallback) depends on the count, so
    unequal counts alone separate members from non-members on data with no signal at all
    (docs/reference_attacks.md). Equal counts per side make the fit's distribution the same
    whichever side the target is on; the models are exchangeable, so which c are kept does
    not matter.
    """
    out = ~membership
    if not balance:
        return membership, out
    n_in = membership.sum(axis=1, keepdims=True)
    n_out = membership.shape[1] - n_in
    c = np.where((n_in > 0) & (n_out > 0), np.minimum(n_in, n_out), membership.shape[1])
    return (
        membership & (np.cumsum(membership, axis=1) <= c),
        out & (np.cumsum(out, axis=1) <= c),
    )


def _check_target(target: np.ndarray, reference: np.ndarray, t_name: str, r_name: str) -> None:
    if target.shape != reference.shape[:-1]:
        raise ValueError(
            f"{t_name} has shape {target.shape} but {r_name} {reference.shape} needs "
            f"{reference.shape[:-1]} (the reference shape without its models axis)"
        )
    if reference.shape[-1] < 1:
        raise ValueError(f"{r_name} has no reference model (last axis is empty)")


# --------------------------------------------------------------------------- Gaussian fits


@dataclass(frozen=True)
class _Fit:
    """Per-(sample, group) Gaussian parameters of one side (IN or OUT) of the references."""

    center: np.ndarray  # (N, G); NaN where the sample has no reference of this side
    std: np.ndarray  # (N, G); per-sample std where >= 2 references, else the global one
    global_std: np.ndarray  # (G,)
    count: np.ndarray  # (N, 1) references of this side per sample
    entry_mean: np.ndarray  # (G,) mean over all (sample, model) entries of this side
    n_entries: int


def _masked_center(values: np.ndarray, mask: np.ndarray, count: np.ndarray, how: Center):
    """Per-row median or mean over the masked models, vectorised (no per-row loop)."""
    if how == "mean":
        total = np.where(mask, values, 0.0).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count
    if how != "median":
        raise ValueError(f"center must be 'median' or 'mean', got {how!r}")
    # Unmasked entries sort to the end (+inf); the median is then read at the middle of the
    # first `count` entries of each row. np.nanmedian would do the same with a Python-level
    # fallback that is ~50x slower on (10 000, 64).
    ordered = np.sort(np.where(mask, values, np.inf), axis=-1)
    c = np.broadcast_to(count, ordered.shape[:-1]).astype(np.int64)
    lo = np.clip((c - 1) // 2, 0, None)[..., None]
    hi = np.clip(c // 2, 0, ordered.shape[-1] - 1)[..., None]
    med = 0.5 * (
        np.take_along_axis(ordered, lo, axis=-1)[..., 0]
        + np.take_along_axis(ordered, hi, axis=-1)[..., 0]
    )
    return np.where(c > 0, med, np.nan)


def _fit_side(values: np.ndarray, mask: np.ndarray, center: Center) -> _Fit:
    """Fit one side's Gaussians. values (N, G, M); mask (N, 1, M) selects this side's models.

    The per-sample std is the unbiased (ddof=1) std around the per-sample mean, used where a
    sample has at least two references of this side. The global std of a group pools the
    within-sample squared deviations of all samples (the Gaussian model's common σ); when no
    sample has two references of this side (a single reference model) it falls back to the
    std of all entries, which is what the LiRA code's ``np.std(dat_in)`` computes.
    """
    count = mask.sum(axis=-1)  # (N, 1)
    n_groups = values.shape[1]
    n_entries = int(count.sum())
    masked = np.where(mask, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = masked.sum(axis=-1) / count  # (N, G), NaN where count == 0
    dev2 = np.where(mask, (values - np.nan_to_num(mean)[..., None]) ** 2, 0.0).sum(axis=-1)
    has_two = count[:, 0] >= 2
    dof = float((count[has_two, 0] - 1).sum())
    if dof > 0:
        global_std = np.sqrt(dev2[has_two].sum(axis=0) / dof)
    elif n_entries >= 2:
        global_std = values.transpose(1, 0, 2)[:, mask[:, 0, :]].std(axis=1, ddof=1)
    else:
        global_std = np.full(n_groups, np.nan)  # resolved by the caller from the other side
    with np.errstate(invalid="ignore", divide="ignore"):
        per_sample = np.sqrt(dev2 / (count - 1))
    std = np.where(count >= 2, per_sample, global_std[None, :])
    entry_mean = masked.sum(axis=(0, 2)) / n_entries if n_entries else np.full(n_groups, np.nan)
    return _Fit(
        center=_masked_center(values, mask, count, center),
        std=std,
        global_std=global_std,
        count=count,
        entry_mean=entry_mean,
        n_entries=n_entries,
    )


@dataclass(frozen=True)
class _Gaussians:
    mu_in: np.ndarray | None  # None when no reference is IN for any sample (offline only)
    sd_in: np.ndarray | None
    mu_out: np.ndarray
    sd_out: np.ndarray


def _fit_in_out(
    values: np.ndarray,
    membership: np.ndarray,
    fix_variance: bool,
    center: Center,
    need_in: bool,
    balance: bool,
) -> _Gaussians:
    """IN and OUT Gaussians per (sample, group), with every missing estimate filled.

    values (N, G, M), membership (N, M); ``balance`` as :func:`_sides`. A sample with no IN
    reference gets
    ``μ_in = μ_out + δ`` and a sample with no OUT reference ``μ_out = μ_in − δ``, where δ is the
    mean of all IN entries minus the mean of all OUT entries of its group: under a random
    membership draw that is an unbiased estimate of the average membership shift, and it keeps
    such samples' scores on the same log-likelihood-ratio scale as the rest.
    """
    in_mask, out_mask = _sides(membership, balance)
    fout = _fit_side(values, out_mask[:, None, :], center)
    # Offline, IN references only matter for samples without an OUT one: skip their fit else.
    need_fin = need_in or (fout.count == 0).any()
    fin = _fit_side(values, in_mask[:, None, :], center) if need_fin else None

    def any_std() -> np.ndarray:
        # Last resort for a side with fewer than two entries in all (after the other side's
        # global std): the spread of every reference entry. Only a handful of entries gets here.
        return values.transpose(1, 0, 2).reshape(values.shape[1], -1).std(axis=1)

    if fout.n_entries == 0:
        raise ValueError(
            "no reference model is OUT for any sample: every reference trained on every "
            "sample, so the OUT distribution cannot be estimated"
        )
    if fin is None or fin.n_entries == 0:
        if need_in:
            raise ValueError(
                "no reference model is IN for any sample: online LiRA needs IN references; "
                "use lira_offline (or pixel_lira_offline) instead"
            )
        sd_out_g = fout.global_std
        if np.isnan(sd_out_g).any():
            sd_out_g = np.where(np.isnan(sd_out_g), any_std(), sd_out_g)
        sd_out = sd_out_g if fix_variance else np.where(np.isnan(fout.std), sd_out_g, fout.std)
        return _Gaussians(None, None, fout.center, np.broadcast_to(sd_out, fout.center.shape))
    delta = fin.entry_mean - fout.entry_mean  # (G,)
    sd_in_g = np.where(np.isnan(fin.global_std), fout.global_std, fin.global_std)
    if np.isnan(sd_in_g).any():
        sd_in_g = np.where(np.isnan(sd_in_g), any_std(), sd_in_g)
    sd_out_g = np.where(np.isnan(fout.global_std), sd_in_g, fout.global_std)
    mu_in = np.where(fin.count > 0, fin.center, fout.center + delta)
    mu_out = np.where(fout.count > 0, fout.center, fin.center - delta)
    if fix_variance:
        sd_in = np.broadcast_to(sd_in_g, mu_in.shape)
        sd_out = np.broadcast_to(sd_out_g, mu_out.shape)
    else:
        sd_in = np.where(np.isnan(fin.std), sd_in_g, fin.std)
        sd_out = np.where(np.isnan(fout.std), sd_out_g, fout.std)
    return _Gaussians(mu_in, sd_in, mu_out, sd_out)


def _online_llr(target: np.ndarray, g: _Gaussians, eps: float) -> np.ndarray:
    # eps keeps a zero std (identical references) finite, as the LiRA code's `std + 1e-30`.
    return norm.logpdf(target, g.mu_in, g.sd_in + eps) - norm.logpdf(
        target, g.mu_out, g.sd_out + eps
    )


def _offline_stat(target: np.ndarray, g: _Gaussians, eps: float) -> np.ndarray:
    # -log Pr[Z >= t], Z ~ N(μ_out, σ_out): a monotone transform of the paper's one-sided
    # 1 − Pr[Z > t], computed in log space so the member-like upper tail keeps its resolution
    # (1 − Pr[Z > t] rounds to 1.0 beyond ~8σ, which would tie the strongest members).
    z = (target - g.mu_out) / (g.sd_out + eps)
    return -log_ndtr(-z)


def _prepare(
    target: ArrayLike,
    reference: ArrayLike,
    membership: ArrayLike,
    t_ndim: int,
    names: tuple[str, str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = _finite(names[0], target, t_ndim)
    r = _finite(names[1], reference, t_ndim + 1)
    _check_target(t, r, *names)
    mem = _membership(membership, r.shape[0], r.shape[-1], f"{names[1]} {r.shape}")
    return t, r, mem


# --------------------------------------------------------------------------- LiRA


def lira_online(
    target: ArrayLike,
    reference: ArrayLike,
    membership: ArrayLike,
    fix_variance: bool = False,
    eps: float = 1e-30,
    *,
    center: Center = "median",
    balance: bool = True,
) -> np.ndarray:
    """Online LiRA: per-sample IN/OUT Gaussian log likelihood ratio of the target's statistic.

    ``score(x) = log N(t_x; μ_in(x), σ_in(x)) − log N(t_x; μ_out(x), σ_out(x))``, the means
    being per-sample medians (as the LiRA code) over the reference models that did (IN) or did
    not (OUT) train on x.

    Missing estimates never give NaN: a sample with fewer than two IN (OUT) references uses the
    global IN (OUT) std; a sample with no IN reference gets ``μ_in = μ_out + δ`` and one with no
    OUT reference ``μ_out = μ_in − δ``, δ being the mean of all IN entries minus the mean of all
    OUT entries (see docs/reference_attacks.md).

    Args:
        target: (N,) the target model's statistic per sample, higher = more member-like (e.g.
            :func:`logit_from_loss`).
        reference: (N, M) the same statistic under M reference models.
        membership: (N, M) bool, True where reference model m trained on sample n.
        fix_variance: one global σ_in and one global σ_out (pooled within-sample stds) for all
            samples instead of per-sample stds; better with few references.
        eps: added to every σ so identical references stay finite.
        center: ``"median"`` (the LiRA code) or ``"mean"`` per-sample location estimate.
        balance: give each sample the same number of IN and OUT references
            (``min(n_in, n_out)``) so that the count cannot reveal the target's membership
            in a per-sample balanced design; ``False`` uses every reference.

    Returns:
        (N,) float64 scores, higher = more likely a member.

    Raises:
        ValueError: shapes disagree, a statistic is not finite, or no reference is IN (or OUT)
            for any sample.
    """
    t, r, mem = _prepare(target, reference, membership, 1, ("target", "reference"))
    g = _fit_in_out(r[:, None, :], mem, fix_variance, center, need_in=True, balance=balance)
    return _online_llr(t[:, None], g, eps)[:, 0]


def lira_offline(
    target: ArrayLike,
    reference: ArrayLike,
    membership: ArrayLike | None = None,
    fix_variance: bool = True,
    eps: float = 1e-30,
    *,
    center: Center = "median",
    balance: bool = True,
) -> np.ndarray:
    """Offline LiRA: one-sided test of the target's statistic against the OUT Gaussian only.

    ``score(x) = −log Pr[Z ≥ t_x]`` with ``Z ~ N(μ_out(x), σ_out(x))``, a monotone transform of
    the paper's ``1 − Pr[Z > t_x]``. IN references are used only for a sample that has no OUT
    reference (``μ_out = μ_in − δ``, as :func:`lira_online`).

    Args:
        target: (N,) the target model's statistic, higher = more member-like.
        reference: (N, M) the same statistic under M reference models.
        membership: (N, M) bool, True where reference m trained on sample n; None means no
            reference trained on any sample (all OUT), the offline setting proper.
        fix_variance: one global σ_out for all samples (default, as the paper recommends for
            offline attacks with few references) instead of per-sample stds.
        eps: added to every σ.
        center: ``"median"`` or ``"mean"`` per-sample location estimate.
        balance: use ``min(n_in, n_out)`` OUT references per sample (all of them where a
            sample has no IN reference), as :func:`lira_online`.

    Returns:
        (N,) float64 scores (>= 0), higher = more likely a member.
    """
    if membership is None:
        membership = np.zeros(np.shape(reference), dtype=bool)
    t, r, mem = _prepare(target, reference, membership, 1, ("target", "reference"))
    g = _fit_in_out(r[:, None, :], mem, fix_variance, center, need_in=False, balance=balance)
    return _offline_stat(t[:, None], g, eps)[:, 0]


# Elements (samples x pixels x models) per block of dense fits: ~32 MB per float64 temporary.
_DENSE_BLOCK = 1 << 22


def _dense(
    target_maps: ArrayLike,
    reference_maps: ArrayLike,
    membership: ArrayLike,
    online: bool,
    fix_variance: bool,
    eps: float,
    center: Center,
    balance: bool,
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
    fix_variance: bool = True,
    eps: float = 1e-30,
    *,
    center: Center = "median",
    balance: bool = True,
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
    fix_variance: bool = True,
    eps: float = 1e-30,
    *,
    center: Center = "median",
    balance: bool = True,
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


# --------------------------------------------------------------------------- RMIA


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
            as :func:`lira_online`; the equal weighting of the halves already removes the
            count from the online mean, this also equalises its noise.

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
        target_p: (N,) Pr(x|θ_target) > 0 (e.g. :func:`likelihood_from_loss`).
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


# --------------------------------------------------------------------------- transforms


def logit_from_loss(loss: ArrayLike) -> np.ndarray:
    """LiRA's logit scaling of a cross-entropy-like loss: ``log(p / (1 − p))``, ``p = exp(−loss)``.

    Computed as ``−loss − log(−expm1(−loss))`` so it stays exact for tiny losses (p → 1, where
    ``1 − p`` would round to 0) and for large ones. Losses are floored at the smallest normal
    float so a zero loss gives a large finite value, not inf.

    Args:
        loss: per-sample (or per-pixel) losses >= 0, e.g. a segmentation victim's mean
            per-pixel cross-entropy (``exp(−mean CE)`` is the geometric-mean probability of the
            right class).

    Returns:
        float64 array of the same shape; higher = more member-like.
    """
    arr = np.asarray(loss, dtype=np.float64)
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError("logit_from_loss needs finite losses >= 0")
    arr = np.maximum(arr, np.finfo(np.float64).tiny)
    return -arr - np.log(-np.expm1(-arr))


def log_error(err: ArrayLike) -> np.ndarray:
    """Attack statistic of a reconstruction error (L1 or L2): ``−log(err)``.

    Errors are positive and right-skewed across reference models; their log is closer to
    Gaussian (log-normal errors) and turns a ratio between member and non-member errors into a
    shift, which is what the LiRA Gaussians model. The sign makes higher = more member-like.
    Zero errors are floored at the smallest normal float (a large finite value).

    Args:
        err: errors >= 0, e.g. a pix2pix victim's per-sample mean L1 error in [0, 1].

    Returns:
        float64 array of the same shape.
    """
    arr = np.asarray(err, dtype=np.float64)
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError("log_error needs finite errors >= 0")
    return -np.log(np.maximum(arr, np.finfo(np.float64).tiny))


def likelihood_from_loss(loss: ArrayLike, temperature: float = 1.0) -> np.ndarray:
    """RMIA's Pr(x|θ) from a loss: ``exp(−loss / T)``, in (0, 1].

    For a cross-entropy this is the probability of the right label (T = 1); T plays the role
    of RMIA's softmax temperature. For an L1 error in [0, 1], T near the typical error (≈ 0.1)
    spreads the likelihoods over (0, 1) instead of crowding them near 1 where RMIA's ``1 − a``
    offset dominates.

    Args:
        loss: losses >= 0.
        temperature: T > 0.

    Returns:
        float64 array of the same shape; raises if any value underflows to 0.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    arr = np.asarray(loss, dtype=np.float64)
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError("likelihood_from_loss needs finite losses >= 0")
    out = np.exp(-arr / temperature)
    if np.any(out == 0):
        raise ValueError(
            f"exp(-loss/T) underflows to 0 for losses up to {arr.max():.3g} at T={temperature}; "
            "raise the temperature"
        )
    return out


# --------------------------------------------------------------------------- evaluation helpers


def leave_one_out(
    attack_fn: Callable[..., np.ndarray],
    stats: ArrayLike,
    membership: ArrayLike,
    **kwargs,
) -> np.ndarray:
    """Score every model in turn as the target, with the other K − 1 as its references.

    Column k of the result is ``attack_fn(stats[..., k], stats without column k,
    membership without column k, **kwargs)``, and ``membership[:, k]`` is its ground truth, so
    one K-model population yields N × K member/non-member evaluations (what low-FPR metrics
    need). A loop over k: each call is already vectorised over samples.

    Args:
        attack_fn: any attack of this module (``lira_online``, ``rmia``, ``pixel_lira`` ...),
            called as ``attack_fn(target, reference, membership, **kwargs)``.
        stats: (N, K) scalar statistics or (N, P, K) maps, models on the last axis.
        membership: (N, K) bool.
        **kwargs: passed to ``attack_fn`` (e.g. ``fix_variance=True``, ``a=0.3``).

    Returns:
        (N, K) float64 scores.
    """
    arr = np.asarray(stats)
    if arr.ndim not in (2, 3):
        raise ValueError(f"stats must be (N, K) or (N, P, K), got shape {arr.shape}")
    n, k = arr.shape[0], arr.shape[-1]
    mem = _membership(membership, n, k, f"stats {arr.shape}")
    if k < 2:
        raise ValueError("leave_one_out needs at least 2 models (one target, one reference)")
    scores = np.empty((n, k), dtype=np.float64)
    for j in range(k):
        rest = np.r_[0:j, j + 1 : k]
        scores[:, j] = attack_fn(arr[..., j], arr[..., rest], mem[:, rest], **kwargs)
    return scores


def reference_subsets(
    n_refs_total: int,
    sizes: Sequence[int] = (1, 2, 4, 8, 16),
    n_draws: int = 5,
    seed: int = 0,
) -> dict[int, list[np.ndarray]]:
    """Seeded reference-model subsets for the attack-strength vs number-of-references curve.

    Args:
        n_refs_total: number of available reference columns.
        sizes: subset sizes, each in [1, n_refs_total].
        n_draws: draws per size (fewer when fewer distinct subsets exist: a size equal to the
            total has one).
        seed: seed of ``numpy.random.default_rng``; the same arguments give the same subsets.

    Returns:
        ``{size: [sorted column indices, ...]}``, distinct subsets within each size.
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    rng = np.random.default_rng(seed)
    out: dict[int, list[np.ndarray]] = {}
    for size in sizes:
        if not 1 <= size <= n_refs_total:
            raise ValueError(f"reference subset size {size} not in [1, {n_refs_total}]")
        wanted = min(n_draws, math.comb(n_refs_total, size))
        seen: set[tuple[int, ...]] = set()
        draws: list[np.ndarray] = []
        while len(draws) < wanted:
            cols = np.sort(rng.choice(n_refs_total, size=size, replace=False))
            if tuple(cols) not in seen:
                seen.add(tuple(cols))
                draws.append(cols)
        out[size] = draws
    return out
