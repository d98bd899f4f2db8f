"""Per-sample IN/OUT Gaussian fits of the reference statistics (LiRA's model).

Every missing estimate is filled (a side with fewer than two references, a sample with no
reference on one side), so the LiRA scores never hold NaN; docs/reference_attacks.md says
why each fallback is what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import log_ndtr
from scipy.stats import norm

from miabench.attacks.reference._inputs import _mode, _sides

Center = Literal["median", "mean"]
#: ``fix_variance``: per-sample σ (``False``/"none"), σ pooled within samples (``True``/
#: "pooled"), or one σ from every entry as LiRA's ``plot.py`` (``"global"``)
FixVariance = bool | str
FIX_VARIANCE = ("none", "pooled", "global")


def _variance_mode(fix_variance: FixVariance) -> str:
    return _mode("fix_variance", fix_variance, FIX_VARIANCE, true="pooled")


@dataclass(frozen=True)
class _Fit:
    """Per-(sample, group) Gaussian parameters of one side (IN or OUT) of the references."""

    center: np.ndarray  # (N, G); NaN where the sample has no reference of this side
    std: np.ndarray  # (N, G); per-sample std where >= 2 references, else the global one
    global_std: np.ndarray  # (G,)
    count: np.ndarray  # (N, 1) references of this side per sample
    entry_mean: np.ndarray  # (G,) mean over all (sample, model) entries of this side
    n_entries: int
    all_std: np.ndarray  # (G,) std of every entry of this side (LiRA's global σ)
    all_std_groups: float  # the same over every group at once (LiRA's σ with queries)


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


def _fit_side(values: np.ndarray, mask: np.ndarray, center: Center, ddof: int = 1) -> _Fit:
    """Fit one side's Gaussians. values (N, G, M); mask (N, 1, M) selects this side's models.

    The per-sample std is the std around the per-sample mean with ``ddof`` (1 by default, the
    unbiased variance; LiRA's ``np.std`` is ``ddof=0``), used where a sample has at least two
    references of this side. The global std of a group pools the
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
    dof = float((count[has_two, 0] - ddof).sum())
    if dof > 0:
        global_std = np.sqrt(dev2[has_two].sum(axis=0) / dof)
    elif n_entries >= 2:
        global_std = values.transpose(1, 0, 2)[:, mask[:, 0, :]].std(axis=1, ddof=ddof)
    else:
        global_std = np.full(n_groups, np.nan)  # resolved by the caller from the other side
    with np.errstate(invalid="ignore", divide="ignore"):
        per_sample = np.sqrt(dev2 / (count - ddof))
    std = np.where(count >= 2, per_sample, global_std[None, :])
    entry_mean = masked.sum(axis=(0, 2)) / n_entries if n_entries else np.full(n_groups, np.nan)
    # LiRA's `np.std(dat_in)`: every entry of this side around their common mean, which also
    # counts the spread between samples' means; per group, or over all groups (queries)
    entries = values.transpose(1, 0, 2)[:, mask[:, 0, :]]  # (G, entries)
    all_std = (
        entries.std(axis=1, ddof=ddof) if entries.shape[1] > ddof else np.full(n_groups, np.nan)
    )
    all_std_groups = float(entries.std(ddof=ddof)) if entries.size > ddof else float("nan")
    return _Fit(
        center=_masked_center(values, mask, count, center),
        std=std,
        global_std=global_std,
        count=count,
        entry_mean=entry_mean,
        n_entries=n_entries,
        all_std=all_std,
        all_std_groups=all_std_groups,
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
    fix_variance: FixVariance,
    center: Center,
    need_in: bool,
    balance: bool | str,
    ddof: int = 1,
    pool_groups: bool = False,
) -> _Gaussians:
    """IN and OUT Gaussians per (sample, group), with every missing estimate filled.

    values (N, G, M), membership (N, M); ``balance`` as
    :func:`~miabench.attacks.reference._inputs._sides`. A sample with no IN reference gets
    ``μ_in = μ_out + δ`` and a sample with no OUT reference ``μ_out = μ_in − δ``, where δ is the
    mean of all IN entries minus the mean of all OUT entries of its group: under a random
    membership draw that is an unbiased estimate of the average membership shift, and it keeps
    such samples' scores on the same log-likelihood-ratio scale as the rest.

    ``fix_variance="global"`` is LiRA's ``plot.py``: online, σ_in = σ_out = the std of every IN
    entry (the code takes the OUT σ from the IN entries too); offline, σ_out = the std of every
    OUT entry. ``pool_groups`` takes that std over all groups at once (queries), else per group
    (pixels).
    """
    mode = _variance_mode(fix_variance)
    in_mask, out_mask = _sides(membership, balance)
    fout = _fit_side(values, out_mask[:, None, :], center, ddof)
    # Offline, IN references only matter for samples without an OUT one: skip their fit else.
    need_fin = need_in or (fout.count == 0).any()
    fin = _fit_side(values, in_mask[:, None, :], center, ddof) if need_fin else None

    def any_std() -> np.ndarray:
        # Last resort for a side with fewer than two entries in all (after the other side's
        # global std): the spread of every reference entry. Only a handful of entries gets here.
        return values.transpose(1, 0, 2).reshape(values.shape[1], -1).std(axis=1)

    def entries_std(fit: _Fit) -> np.ndarray:
        std = np.full(values.shape[1], fit.all_std_groups) if pool_groups else fit.all_std
        return np.where(np.isnan(std), any_std(), std)

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
        if mode == "global":
            sd_out = entries_std(fout)
        elif mode == "pooled":
            sd_out = sd_out_g
        else:
            sd_out = np.where(np.isnan(fout.std), sd_out_g, fout.std)
        return _Gaussians(None, None, fout.center, np.broadcast_to(sd_out, fout.center.shape))
    delta = fin.entry_mean - fout.entry_mean  # (G,)
    sd_in_g = np.where(np.isnan(fin.global_std), fout.global_std, fin.global_std)
    if np.isnan(sd_in_g).any():
        sd_in_g = np.where(np.isnan(sd_in_g), any_std(), sd_in_g)
    sd_out_g = np.where(np.isnan(fout.global_std), sd_in_g, fout.global_std)
    mu_in = np.where(fin.count > 0, fin.center, fout.center + delta)
    mu_out = np.where(fout.count > 0, fout.center, fin.center - delta)
    if mode == "global":
        sd = entries_std(fin if need_in else fout)
        sd_in = np.broadcast_to(sd, mu_in.shape)
        sd_out = np.broadcast_to(sd, mu_out.shape)
    elif mode == "pooled":
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


def _offline_stat(target: np.ndarray, g: _Gaussians, eps: float, tail: str = "one") -> np.ndarray:
    """Offline score: ``"one"``-sided (the paper) or ``"two"``-sided (LiRA's ``plot.py``)."""
    z = (target - g.mu_out) / (g.sd_out + eps)
    if tail == "two":
        # plot.py ranks by minus the OUT log density: far from μ_out on either side = member
        return -norm.logpdf(target, g.mu_out, g.sd_out + eps)
    if tail != "one":
        raise ValueError(f"tail must be 'one' or 'two', got {tail!r}")
    # -log Pr[Z >= t], Z ~ N(μ_out, σ_out): a monotone transform of the paper's one-sided
    # 1 − Pr[Z > t], computed in log space so the member-like upper tail keeps its resolution
    # (1 − Pr[Z > t] rounds to 1.0 beyond ~8σ, which would tie the strongest members).
    return -log_ndtr(-z)
