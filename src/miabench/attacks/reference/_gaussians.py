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

from miabench.attacks.reference._inputs import _sides

Center = Literal["median", "mean"]


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

    values (N, G, M), membership (N, M); ``balance`` as
    :func:`~miabench.attacks.reference._inputs._sides`. A sample with no IN reference gets
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
