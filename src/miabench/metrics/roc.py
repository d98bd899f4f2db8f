"""Membership metrics from per-sample attack scores: ROC AUC, TPR at low FPR, thresholds.

Conventions: ``labels`` are 1 for members and 0 for non-members, and a *higher score means
more likely a member*. A threshold ``t`` predicts "member" for ``score >= t``.

The ROC and AUC come from torchmetrics, but the scores are first replaced by their dense
ranks scaled to [0, 1]: torchmetrics applies a sigmoid to any input outside [0, 1], and in
float32 the sigmoid saturates (``sigmoid(20) == sigmoid(30) == 1``), which would merge
distinct large scores into false ties. Ranks keep the order and the ties exactly, and the
thresholds are mapped back to the original score values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_precision,
    binary_recall,
    binary_roc,
)

ArrayLike = np.ndarray | torch.Tensor | Sequence[float]

DEFAULT_FPRS: tuple[float, ...] = (0.001, 0.01)


def tpr_key(fpr: float) -> str:
    """Result key of the TPR at a target FPR, e.g. ``0.001 -> "tpr_at_0.1pct_fpr"``."""
    # ``:g`` drops the float noise of ``fpr * 100`` (0.1 rather than 0.10000000000000002).
    return f"tpr_at_{fpr * 100:g}pct_fpr"


def _scores(scores: ArrayLike) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().double().numpy()
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if np.isnan(arr).any():
        raise ValueError(f"scores contain {int(np.isnan(arr).sum())} NaN value(s)")
    return arr


def _labels(labels: ArrayLike, n: int | None = None) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels).reshape(-1)
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("labels must be 1 (member) or 0 (non-member)")
    arr = arr.astype(np.int64)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{n} scores but {arr.shape[0]} labels")
    return arr


def _inputs(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = _scores(scores)
    y = _labels(labels, len(s))
    if y.min(initial=1) == y.max(initial=0):
        raise ValueError("ROC metrics need both members (label 1) and non-members (label 0)")
    return s, y


def _ranked(scores: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Dense ranks of ``scores`` scaled to [0, 1] (see the module docstring) and the uniques."""
    uniques, inverse = np.unique(scores, return_inverse=True)
    denom = max(len(uniques) - 1, 1)
    return torch.from_numpy(inverse.astype(np.float64) / denom), uniques


def _curve(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ranked, uniques = _ranked(s)
    fpr, tpr, thr = binary_roc(ranked, torch.from_numpy(y))
    # torchmetrics divides in float32, where k/n can land just above a target FPR such as
    # 3/3000 vs 0.001; recover the exact counts and divide in float64 as scikit-learn does.
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    fpr = np.rint(fpr.double().numpy() * n_neg) / n_neg
    tpr = np.rint(tpr.double().numpy() * n_pos) / n_pos
    # The first threshold is torchmetrics' "predict nobody" sentinel; the rest are ranks.
    idx = np.rint(thr[1:].double().numpy() * max(len(uniques) - 1, 1)).astype(np.int64)
    return fpr, tpr, np.concatenate([[np.inf], uniques[idx]])


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of ``score >= threshold`` over every distinct score.

    Args:
        scores: (N,) attack scores, higher = more likely member (numpy array or tensor).
        labels: (N,) 1 for members, 0 for non-members.

    Returns:
        ``(fpr, tpr, thresholds)`` as float64 numpy arrays, thresholds in decreasing order.
        The first point is ``(0, 0)`` with threshold ``+inf``, as in scikit-learn's
        ``roc_curve(..., drop_intermediate=False)``.

    Raises:
        ValueError: NaN scores, labels other than 0/1, or only one class present.
    """
    return _curve(*_inputs(scores, labels))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR on the ROC curve among points with FPR <= ``target`` (as in LiRA)."""
    ok = fpr <= target
    return float(tpr[ok].max()) if ok.any() else 0.0


def roc_metrics(
    scores: ArrayLike, labels: ArrayLike, fprs: Sequence[float] = DEFAULT_FPRS
) -> dict[str, float]:
    """ROC AUC and TPR at fixed low FPRs.

    Args:
        scores: (N,) attack scores, higher = more likely member (numpy array or tensor).
        labels: (N,) 1 for members, 0 for non-members.
        fprs: target false positive rates; each gives a key from :func:`tpr_key`.

    Returns:
        ``{"auc": ..., "tpr_at_0.1pct_fpr": ..., "tpr_at_1pct_fpr": ...}`` (for the default
        ``fprs``) as Python floats.

    Raises:
        ValueError: NaN scores, labels other than 0/1, or only one class present.
    """
    s, y = _inputs(scores, labels)
    ranked, _ = _ranked(s)
    out = {"auc": float(binary_auroc(ranked, torch.from_numpy(y)))}
    fpr, tpr, _ = _curve(s, y)
    for f in fprs:
        out[tpr_key(f)] = tpr_at_fpr(fpr, tpr, f)
    return out


def choose_threshold(scores: ArrayLike, labels: ArrayLike) -> float:
    """Threshold maximising balanced accuracy of ``score >= threshold`` on calibration rows.

    Candidate cuts are the distinct scores (the "nobody is a member" cut is left out: it
    scores 0.5 like "everybody", and its threshold would be ``+inf``). Any threshold in
    ``(next lower score, cut]`` gives the same calibration predictions, so the midpoint of
    that interval is returned rather than a calibration score itself, which would sit on
    the edge of the interval and bias test predictions toward "member". When several
    adjacent cuts tie for the best balanced accuracy, the interval spans all of them. When
    non-adjacent cuts tie, the highest (fewest false positives) wins. If the interval is
    unbounded below (the best cut is the lowest score), its upper end is returned.

    Args:
        scores: (N,) calibration scores, higher = more likely member.
        labels: (N,) 1 for members, 0 for non-members.

    Returns:
        The threshold as a Python float.

    Raises:
        ValueError: NaN scores, labels other than 0/1, or only one class present.
    """
    fpr, tpr, thresholds = roc_curve(scores, labels)
    y = _labels(labels)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    # Integer counts make ties exact; balanced accuracy is monotone in tp * N - fp * P.
    tp = np.rint(tpr[1:] * n_pos).astype(np.int64)
    fp = np.rint(fpr[1:] * n_neg).astype(np.int64)
    cuts = thresholds[1:]  # decreasing distinct scores
    gain = tp * n_neg - fp * n_pos
    best = np.flatnonzero(gain == gain.max())
    first = last = int(best[0])
    while last + 1 < len(cuts) and gain[last + 1] == gain[first]:
        last += 1
    upper = float(cuts[first])
    if last + 1 == len(cuts):
        return upper
    lower = float(cuts[last + 1])
    mid = 0.5 * (upper + lower)
    # An infinite score makes the midpoint inf or NaN, and between adjacent floats it can
    # round onto the excluded lower end; the upper end is always inside the interval.
    return mid if np.isfinite(mid) and lower < mid <= upper else upper


def threshold_metrics(
    scores: ArrayLike, labels: ArrayLike, threshold: float
) -> dict[str, float | None]:
    """Accuracy, precision, recall and balanced accuracy of ``score >= threshold``.

    Args:
        scores: (N,) attack scores, higher = more likely member.
        labels: (N,) 1 for members, 0 for non-members.
        threshold: predict "member" where ``score >= threshold``.

    Returns:
        ``{"accuracy", "precision", "recall", "balanced_accuracy"}`` as Python floats.
        Precision is 0 when nothing is predicted a member (scikit-learn's
        ``zero_division=0``); balanced accuracy is None when a class is absent.
    """
    s = _scores(scores)
    y = torch.from_numpy(_labels(labels, len(s)))
    # Hard 0/1 predictions with threshold 0.5 keep torchmetrics from applying its sigmoid
    # and from using its own ``>`` versus our ``>=``.
    pred = torch.from_numpy((s >= threshold).astype(np.float64))
    recall = float(binary_recall(pred, y))
    n_neg = int((y == 0).sum())
    specificity = float(((pred == 0) & (y == 0)).sum()) / n_neg if n_neg else None
    balanced = 0.5 * (recall + specificity) if specificity is not None and y.any() else None
    return {
        "accuracy": float(binary_accuracy(pred, y)),
        "precision": float(binary_precision(pred, y)),
        "recall": recall,
        "balanced_accuracy": balanced,
    }


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


def evaluate_scores(
    scores: ArrayLike,
    labels: ArrayLike,
    is_calibration: ArrayLike,
    fprs: Sequence[float] = DEFAULT_FPRS,
) -> dict[str, Any]:
    """All metrics of one attack: threshold from calibration rows, metrics on test rows.

    Args:
        scores: (N,) attack scores, higher = more likely member.
        labels: (N,) 1 for members, 0 for non-members.
        is_calibration: (N,) bool mask of calibration rows (see :func:`calibration_split`).
        fprs: target FPRs for the TPR@FPR keys.

    Returns:
        ``auc``, one ``tpr_at_*pct_fpr`` per FPR, ``accuracy``, ``precision``, ``recall``,
        ``balanced_accuracy``, ``threshold``, ``n_calibration``, ``n_test``. Without
        calibration rows the threshold metrics are None and the ROC metrics use every row.

    Raises:
        ValueError: NaN scores, mismatched lengths, or a split lacking a class.
    """
    s = _scores(scores)
    y = _labels(labels, len(s))
    if isinstance(is_calibration, torch.Tensor):
        is_calibration = is_calibration.detach().cpu().numpy()
    cal = np.asarray(is_calibration, dtype=bool).reshape(-1)
    if cal.shape[0] != len(s):
        raise ValueError(f"{len(s)} scores but {cal.shape[0]} calibration flags")
    if not cal.any():
        out: dict[str, Any] = roc_metrics(s, y, fprs)
        out.update(accuracy=None, precision=None, recall=None, balanced_accuracy=None)
        out.update(threshold=None, n_calibration=0, n_test=len(s))
        return out
    test = ~cal
    if not test.any():
        raise ValueError("every row is a calibration row; nothing left to test on")
    threshold = choose_threshold(s[cal], y[cal])
    out = roc_metrics(s[test], y[test], fprs)
    out.update(threshold_metrics(s[test], y[test], threshold))
    out.update(threshold=threshold, n_calibration=int(cal.sum()), n_test=int(test.sum()))
    return out


def _rank_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count one half) from average ranks."""
    ranks = rankdata(scores)
    positives = labels.astype(bool)
    n1, n0 = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def group_bootstrap_auc(
    scores: ArrayLike,
    labels: ArrayLike,
    groups: Sequence[str] | np.ndarray,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile confidence interval of the AUC when samples come in groups (identities).

    Images of one identity are not independent evidence: on identity-disjoint test sets the
    AUC moves with which identities were drawn, so its uncertainty is governed by the number
    of identities, not of images (on the MINT proxy, ~120 test identities for ~5 000
    images). Whole groups are resampled with replacement, members' and non-members'
    separately (each group holds one class), and the AUC recomputed. Written by hand:
    scikit-learn and torchmetrics bootstrap samples, not clusters of samples.

    Args:
        scores: (N,) scores, higher = more likely member.
        labels: (N,) 1 member / 0 non-member.
        groups: (N,) group of every row.
        n_boot: bootstrap replicates.
        level: coverage of the interval.
        seed: seed of the resampling.

    Returns:
        ``(low, high)`` AUC bounds.

    Raises:
        ValueError: see :func:`roc_metrics`; or a group holding both classes.
    """
    s, y = _inputs(scores, labels)
    groups = np.asarray(groups).reshape(-1)
    if groups.shape[0] != len(s):
        raise ValueError(f"{len(s)} scores but {groups.shape[0]} groups")
    rng = np.random.default_rng(seed)
    members: dict[int, list[np.ndarray]] = {}
    for cls in (0, 1):
        names, inverse = np.unique(groups[y == cls], return_inverse=True)
        rows = np.flatnonzero(y == cls)
        members[cls] = [rows[inverse == i] for i in range(len(names))]
    if set(groups[y == 1]) & set(groups[y == 0]):
        raise ValueError("a group holds both members and non-members; resample rows instead")
    aucs = np.empty(n_boot)
    for b in range(n_boot):
        rows = np.concatenate(
            [
                members[cls][i]
                for cls in (0, 1)
                for i in rng.integers(0, len(members[cls]), len(members[cls]))
            ]
        )
        aucs[b] = _rank_auc(s[rows], y[rows])
    tail = (1 - level) / 2
    low, high = np.quantile(aucs, [tail, 1 - tail])
    return float(low), float(high)
