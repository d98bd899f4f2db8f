"""The calibration split: which scored samples an attack learns or picks its threshold on.

An attack's scores are split into a calibration half (thresholds, a trained auditor's
training set) and a test half (the reported metrics). :func:`calibration_split` draws the
halves per class (member / non-member); :func:`grouped_calibration_split` keeps every group
(:func:`group_of`: the identity of face data) whole on one side, optionally balanced per
stratum (:func:`stratum_of`: e.g. the class of a proxy identity), so a learning attack is
tested on identities it never saw.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from miabench.metrics.roc import ArrayLike, _labels


def group_of(sample_id: str) -> str:
    """Group of a sample: the first path component of its id (the identity of face data,
    ``<identity>/<file>``; the phase of an aligned dataset)."""
    return sample_id.split("/", 1)[0]


def stratum_of(identity: str, pattern: str | None) -> str:
    """Stratum of an identity: the first match of ``pattern`` in its name ("" when no pattern).

    Raises:
        ValueError: the pattern does not match the name (names both).
    """
    if pattern is None:
        return ""
    match = re.search(pattern, identity)
    if match is None:
        raise ValueError(f"identity {identity!r} does not match stratum_pattern {pattern!r}")
    return match.group(0)


def calibration_split(labels: ArrayLike, fraction: float, seed: int) -> np.ndarray:
    """Deterministic stratified calibration mask.

    Each class contributes ``round(fraction * n_class)`` rows (at least one and at most
    ``n_class - 1`` when ``fraction > 0`` and the class has two or more rows), so both
    splits keep the member/non-member ratio.

    Args:
        labels: (N,) 1 for members, 0 for non-members.
        fraction: share of each class used to choose thresholds, in [0, 1).
        seed: seed of the permutation; the same labels and seed give the same mask.

    Returns:
        (N,) bool numpy array, True for calibration rows.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"calibration fraction must be in [0, 1), got {fraction}")
    y = _labels(labels)
    mask = np.zeros(len(y), dtype=bool)
    if fraction == 0.0:
        return mask
    rng = np.random.default_rng(seed)
    for cls in (0, 1):
        rows = np.flatnonzero(y == cls)
        if len(rows) == 0:
            continue
        n_cal = int(round(fraction * len(rows)))
        if len(rows) >= 2:
            n_cal = min(max(n_cal, 1), len(rows) - 1)
        mask[rng.permutation(rows)[:n_cal]] = True
    return mask


def grouped_calibration_split(
    labels: np.ndarray,
    groups: Sequence[str],
    fraction: float,
    seed: int,
    strata: Sequence[str] | None = None,
) -> np.ndarray:
    """Calibration mask that keeps every group (identity) on one side of the split.

    Per class (and per stratum, when ``strata`` are given), the groups are sorted by size
    (number of rows; random order among equal sizes) and cut into consecutive blocks of
    similar size; in each block a seeded random choice of groups goes to calibration, as many
    as keep the running count at ``fraction`` of the groups seen so far. An attack that
    learns on the calibration half (a MINT auditor) is thus tested on identities it never
    saw, and cannot score by recognising an identity instead of membership. Both halves get
    the same group-size distribution within every cell, and stratifying (e.g. by the class
    of a proxy identity) gives them the same stratum mix per class: otherwise a stratum, or
    a range of identity sizes, with more members than non-members among the calibration
    groups tends to have fewer among the test groups, and an auditor that learned "this
    stratum (or this kind of identity) means member" scores below chance. (Measured on the
    embedded MINT proxy: an earlier greedy fill by sample count left the large identities on
    the test side, test non-member identities averaging 61 samples against 49 for members,
    so identity size alone scored test AUC 0.39.)

    Args:
        labels: (N,) 1 member / 0 non-member.
        groups: (N,) group of each row (see :func:`group_of`).
        fraction: share of each cell's groups (and so about of its rows) for calibration,
            in [0, 1).
        seed: seed of the choice within blocks.
        strata: (N,) stratum of each row (constant within a group), or None.

    Raises:
        ValueError: ``fraction`` out of range, or a class (or class and stratum) with a
            single group (it cannot be on both sides).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"calibration fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels).reshape(-1)
    groups = np.asarray(groups).reshape(-1)
    strata = np.zeros(len(labels), dtype=int) if strata is None else np.asarray(strata)
    mask = np.zeros(len(labels), dtype=bool)
    if fraction == 0.0:
        return mask
    rng = np.random.default_rng(seed)
    # blocks hold about one group of the smaller side per block (3 + 1 for 75 %)
    block = max(2, round(1 / min(fraction, 1 - fraction)))
    for cls in (0, 1):
        for stratum in np.unique(strata[labels == cls]):
            rows = np.flatnonzero((labels == cls) & (strata == stratum))
            names, sizes = np.unique(groups[rows], return_counts=True)
            cell = f"class {cls}" + (f", stratum {stratum}" if len(np.unique(strata)) > 1 else "")
            if len(names) < 2:
                raise ValueError(
                    f"{cell} has {len(names)} group(s); a split disjoint by group needs two"
                )
            by_size = np.lexsort((rng.random(len(names)), sizes))
            chosen: list[int] = []
            for start in range(0, len(names), block):
                members = by_size[start : start + block]
                k = int(round(fraction * (start + len(members)))) - len(chosen)
                chosen += rng.permutation(members)[: max(k, 0)].tolist()
            if len(chosen) == len(names):  # keep at least one group for the test side
                chosen.pop()
            if not chosen:  # and one for calibration
                chosen.append(int(by_size[0]))
            mask[rows[np.isin(groups[rows], names[chosen])]] = True
    return mask
