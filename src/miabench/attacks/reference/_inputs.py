"""Input checks of the reference attacks: shapes, finite values, the membership matrix.

Also which references each sample's IN and OUT fits use (:func:`_sides`, balanced counts).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


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
