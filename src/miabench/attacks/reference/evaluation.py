"""Evaluation helpers of the reference attacks: every model as the target, reference subsets."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from miabench.attacks.reference._inputs import _membership

__all__ = ["leave_one_out", "reference_subsets"]


def leave_one_out(
    attack_fn: Callable[..., np.ndarray],
    stats: ArrayLike,
    membership: ArrayLike,
    **kwargs: Any,
) -> np.ndarray:
    """Score every model in turn as the target, with the other K − 1 as its references.

    Column k of the result is ``attack_fn(stats[..., k], stats without column k,
    membership without column k, **kwargs)``, and ``membership[:, k]`` is its ground truth, so
    one K-model population yields N × K member/non-member evaluations (what low-FPR metrics
    need). A loop over k: each call is already vectorised over samples.

    Args:
        attack_fn: any attack of this package (``lira_online``, ``rmia``, ``pixel_lira`` ...),
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
