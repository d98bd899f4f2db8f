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


#: ``balance`` values: how many IN and OUT references each sample's fits use
Balance = bool | str
BALANCE = ("global", "sample", "none")


def _mode(name: str, value: bool | str | None, modes: tuple[str, ...], true: str) -> str:
    """An option given as a mode name or a bool: True → ``true``, False/None → ``"none"``."""
    if value is True:
        return true
    if value is False or value is None:
        return "none"
    if value not in modes:
        raise ValueError(f"{name} must be one of {modes} (or True/False), got {value!r}")
    return str(value)


def _balance_mode(balance: Balance) -> str:
    return _mode("balance", balance, BALANCE, true="global")


def _sides(membership: np.ndarray, balance: Balance) -> tuple[np.ndarray, np.ndarray]:
    """Which references each sample's IN and OUT fits use, as two (N, M) masks.

    - ``"global"`` (``True``, the default of every attack; what LiRA's ``plot.py`` does with
      its ``in_size``/``out_size``): every sample uses the same number of IN references,
      ``c_in = min`` over samples of its IN count, and of OUT references, ``c_out`` likewise
      (the first ones in column order; minima over the samples that have at least one
      reference of that side, a sample with none uses the fallbacks). The counts are then
      constants, so they cannot depend on the target's membership of a sample.
    - ``"sample"``: each sample uses ``c = min(n_in, n_out)`` of each side (all of its one
      side when it lacks the other). Equal counts within a sample, but ``c`` itself reads the
      target's membership when the matrix's row sums are fixed and K is odd (leave-one-out on
      LiRA's matrix, 17 models: 7 per side for members, 8 for non-members; no-signal TPR at
      1 % FPR 0.0135). Unbiased when the references' counts are drawn independently of the
      target (the population stage's paired design, a Bernoulli matrix).
    - ``"none"`` (``False``): every reference.

    Why balance at all: every finite-sample fit depends on its count (median and std noise,
    the σ fallback), so counts that differ with the target's membership separate members from
    non-members on data with no signal at all (docs/reference_attacks.md). The models are
    exchangeable, so which c are kept does not matter.
    """
    out = ~membership
    mode = _balance_mode(balance)
    if mode == "none":
        return membership, out
    n_in = membership.sum(axis=1, keepdims=True)
    n_out = membership.shape[1] - n_in
    if mode == "sample":
        c = np.where((n_in > 0) & (n_out > 0), np.minimum(n_in, n_out), membership.shape[1])
        c_in = c_out = c
    else:
        c_in = int(n_in[n_in > 0].min()) if (n_in > 0).any() else 0
        c_out = int(n_out[n_out > 0].min()) if (n_out > 0).any() else 0
    return (
        membership & (np.cumsum(membership, axis=1) <= c_in),
        out & (np.cumsum(out, axis=1) <= c_out),
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
