"""Adjusted p-values for the many tests of one table (multiple comparisons).

A defense table tests ~49 differences; at 5 % each, the chance of at least one false ``*``
under a global null is ~0.9. Each table therefore adjusts all its p-values together, by
Holm (family-wise error, any dependence) or Benjamini–Hochberg (false discovery rate,
independent or positively dependent tests), and a ``*`` means adjusted p < 0.05.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import false_discovery_control

#: the corrections a table config may name (``table.multiple_testing``)
METHODS = ("holm", "bh")


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979).

    Sorted ascending, the i-th smallest (0-based) of m p-values is multiplied by m − i; the
    running maximum keeps the adjusted values in the order of the raw ones, capped at 1.
    Written by hand: scipy has Benjamini–Hochberg (``false_discovery_control``) but no Holm,
    and statsmodels is not a dependency.

    Args:
        p_values: (m,) raw p-values in [0, 1].

    Returns:
        (m,) adjusted p-values, in the input order.
    """
    p = _checked(p_values)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (``scipy.stats.false_discovery_control``)."""
    p = _checked(p_values)
    return p if len(p) == 0 else np.asarray(false_discovery_control(p, method="bh"))


def adjust(p_values: Sequence[float | None] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values by ``method`` (``holm`` or ``bh``) over the p-values given; missing
    ones (None or NaN: a difference that was not tested) stay NaN and do not count as tests.

    Raises:
        ValueError: an unknown method, or a p-value outside [0, 1].
    """
    if method not in METHODS:
        raise ValueError(f"multiple_testing must be one of {METHODS}, got {method!r}")
    raw = np.asarray([np.nan if v is None else float(v) for v in p_values], dtype=np.float64)
    out = np.full(len(raw), np.nan)
    tested = ~np.isnan(raw)
    correct = holm if method == "holm" else benjamini_hochberg
    out[tested] = correct(raw[tested])
    return out


def _checked(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must be in [0, 1]")
    return p
