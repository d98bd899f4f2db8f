"""Attack statistics from a victim's per-sample losses and errors.

LiRA wants a statistic close to Gaussian across reference models (:func:`logit_from_loss`,
:func:`log_error`); RMIA wants a likelihood Pr(x|θ) (:func:`likelihood_from_loss`). The
signal configs (``conf/reference/signals/*.yaml``) name these as ``transform``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "logit_from_loss",
    "log_error",
    "likelihood_from_loss",
    "logit_from_share",
    "likelihood_from_share",
]


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


def logit_from_share(share: ArrayLike, eps: float = 1e-4) -> np.ndarray:
    """LiRA's statistic of a share in [0, 1] (the label-only agreement): ``log(p / (1 − p))``.

    ``p`` is clipped to ``[eps, 1 − eps]`` first: an answer that agrees exactly (p = 1) or
    not at all (p = 0) is common for hard labels, and must stay finite for the Gaussians.
    """
    p = np.clip(np.asarray(share, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def likelihood_from_share(share: ArrayLike, eps: float = 1e-4) -> np.ndarray:
    """RMIA's Pr(x|θ) read from a share in [0, 1] (the label-only agreement), floored at
    ``eps`` so the likelihood ratios stay finite."""
    return np.clip(np.asarray(share, dtype=np.float64), eps, 1.0)
