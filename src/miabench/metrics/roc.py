"""Membership metrics from per-sample attack scores: ROC AUC, TPR at low FPR, thresholds.

Conventions: ``labels`` are 1 for members and 0 for non-members, and a *higher score means
more likely a member*. A threshold ``t`` predicts "member" for ``score >= t``.

The ROC curve and AUC are scikit-learn's (``roc_curve(drop_intermediate=False)``, which keeps
every distinct score as a threshold, and ``roc_auc_score``); bootstrap intervals of these
metrics are in :mod:`miabench.metrics.bootstrap`, binomial and BCa helpers in
:mod:`miabench.metrics.intervals`. The statistical choices (and their measured coverage) are
in docs/statistics.md; in short:

- **TPR at FPR x** is read off the ROC curve *interpolated linearly* between its points
  (:func:`tpr_at_fpr`). Between two consecutive points the curve is what a randomised
  threshold achieves (a tie block straddling the cut counts fractionally), so quantised
  scores (e.g. 4-level output truncation) do not lose TPR through ties; on untied scores
  it equals the largest TPR among points with FPR <= x (LiRA's rule, up to ``<`` vs ``<=``).
  Rows tied across the classes are counted (``tied_fraction``) and flagged above
  :data:`HEAVY_TIES_SHARE`.
- **Observability**: TPR at FPR x needs :data:`MIN_NONMEMBERS_PER_FPR` / x non-members
  (:func:`observable`); below that the nominal key is null with a note, and the operating
  point the test actually reaches is reported instead (:func:`reached_operating_point`),
  with exact Clopper-Pearson intervals of its TPR and FPR.
- **Accuracy, precision, recall** at the calibrated threshold get Wilson intervals with
  their counts (:func:`threshold_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from sklearn import metrics as skm

from miabench.metrics.intervals import clopper_pearson_interval, wilson_interval

if TYPE_CHECKING:  # torch is not imported to read results (make_table starts faster)
    import torch

ArrayLike = Union[np.ndarray, "torch.Tensor", Sequence[float]]

DEFAULT_FPRS: tuple[float, ...] = (0.001, 0.01)

#: Non-members per unit of target FPR needed to report TPR at that FPR: ``n * fpr >= 10``.
#: With fewer, a single false positive is more than a tenth of the target and the empirical
#: TPR at FPR x is biased up (the threshold lands between few non-member scores): simulated
#: at a true TPR of 0.204 at 1 % FPR, 100 non-members give a mean of 0.264 and a bootstrap
#: interval covering 0.84-0.87 of the time (issue 26).
MIN_NONMEMBERS_PER_FPR = 10

#: Share of test rows in score ties across the classes above which a note flags the ties:
#: the interpolated ROC then rests on randomised thresholds rather than on score order.
HEAVY_TIES_SHARE = 0.1


def tpr_key(fpr: float) -> str:
    """Result key of the TPR at a target FPR, e.g. ``0.001 -> "tpr_at_0.1pct_fpr"``."""
    # ``:g`` drops the float noise of ``fpr * 100`` (0.1 rather than 0.10000000000000002).
    return f"tpr_at_{fpr * 100:g}pct_fpr"


def ci_key(metric: str, level: float = 0.95) -> str:
    """Result key of a metric's interval, e.g. ``("auc", 0.95) -> "auc_ci95"``."""
    return f"{metric}_ci{level * 100:g}"


def note_key(metric: str) -> str:
    """Result key saying why a metric is null, e.g. ``"tpr_at_0.1pct_fpr_note"``."""
    return f"{metric}_note"


def observable(fpr: float, n_nonmembers: int, per_fpr: float = MIN_NONMEMBERS_PER_FPR) -> bool:
    """Whether ``n_nonmembers`` resolve a false positive rate of ``fpr`` well enough.

    Requires ``per_fpr / fpr`` non-members (:data:`MIN_NONMEMBERS_PER_FPR`, 10: 1000 for
    1 % FPR), so that the target holds ``per_fpr`` false positives. With fewer than
    ``1 / fpr`` a single false positive already exceeds ``fpr`` ("TPR at ``fpr``" is then
    TPR at zero false positives); between ``1 / fpr`` and ``10 / fpr`` the estimate is
    still visibly biased up and its bootstrap interval undercovers.

    Args:
        fpr: the target false positive rate.
        n_nonmembers: the non-members (for pooled leave-one-out pairs: the distinct
            non-member samples, not the pairs).
        per_fpr: false positives the target must hold; 1 gives the former rule.
    """
    # the tolerance absorbs float noise such as 1000 * 0.01 = 9.999999999999998
    return n_nonmembers * fpr >= per_fpr - 1e-9


def unobservable_note(
    fpr: float,
    n_nonmembers: int,
    per_fpr: float = MIN_NONMEMBERS_PER_FPR,
    unit: str = "test non-members",
) -> str:
    """Why TPR at ``fpr`` is not reported: the count it had and the count it needs."""
    return f"not observable: {n_nonmembers} {unit} < {per_fpr / fpr:g}"


def _scores(scores: ArrayLike) -> np.ndarray:
    if hasattr(scores, "detach"):  # a torch tensor
        scores = scores.detach().cpu().double().numpy()
    arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if np.isnan(arr).any():
        raise ValueError(f"scores contain {int(np.isnan(arr).sum())} NaN value(s)")
    return arr


def _labels(labels: ArrayLike, n: int | None = None) -> np.ndarray:
    if hasattr(labels, "detach"):  # a torch tensor
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


def _orderable(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores scikit-learn accepts, and the distinct scores to map thresholds back through.

    scikit-learn refuses infinite scores (e.g. the log of a zero likelihood), but ROC metrics
    depend only on the order and ties of the scores: infinite scores are replaced by their
    dense ranks, which keep both.
    """
    if np.isfinite(scores).all():
        return scores, None
    uniques, inverse = np.unique(scores, return_inverse=True)
    return inverse.astype(np.float64), uniques


def roc_curve(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of ``score >= threshold`` over every distinct score.

    Args:
        scores: (N,) attack scores, higher = more likely member (numpy array or tensor).
        labels: (N,) 1 for members, 0 for non-members.

    Returns:
        ``(fpr, tpr, thresholds)`` as float64 numpy arrays, thresholds in decreasing order.
        The first point is ``(0, 0)`` with threshold ``+inf``: scikit-learn's
        ``roc_curve(..., drop_intermediate=False)``.

    Raises:
        ValueError: NaN scores, labels other than 0/1, or only one class present.
    """
    s, y = _inputs(scores, labels)
    ranked, uniques = _orderable(s)
    # drop_intermediate=False: a dropped collinear point could hold the best TPR under a
    # target FPR, and choose_threshold needs every distinct score as a candidate cut.
    fpr, tpr, thresholds = skm.roc_curve(y, ranked, drop_intermediate=False)
    if uniques is not None:
        # the first threshold is scikit-learn's "predict nobody" +inf; the rest are ranks
        thresholds = np.append(np.inf, uniques[thresholds[1:].astype(np.int64)])
    return fpr, tpr, thresholds


def tpr_at_fpr(
    fpr: np.ndarray, tpr: np.ndarray, target: float, interpolate: bool = True
) -> np.ndarray | float:
    """TPR of a ROC curve at FPR ``target``, interpolated linearly between its points.

    The one TPR-at-FPR rule of the package: also applied row-wise to bootstrap replicates.
    From the last point with FPR <= ``target`` (the highest TPR within the budget), the
    curve is followed toward the next point up to FPR = ``target``: the TPR of a
    randomised threshold that predicts "member" for a share of the tie block between the
    two points. On untied scores the segment leaving a point within the budget is
    horizontal (one non-member), so this is the largest TPR among points with
    FPR <= ``target`` (LiRA's rule); on tied scores it credits the share of the tied
    members that the budget pays for, instead of dropping the whole block.

    Args:
        fpr: (..., K) false positive rates, nondecreasing along the last axis, starting at 0.
        tpr: (..., K) true positive rates of the same points.
        target: the FPR budget.
        interpolate: False gives the step rule (largest TPR among points with
            FPR <= ``target``), as LiRA's and RMIA's code.

    Returns:
        A Python float for one curve, else an array of the leading shape. Curves starting at
        ``(0, 0)`` (as :func:`roc_curve`'s) always have a point within the budget.
    """
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    # FPR is nondecreasing, so the points within budget are a prefix; its last is the best
    last = np.maximum((fpr <= target).sum(axis=-1, keepdims=True) - 1, 0)
    nxt = np.minimum(last + 1, fpr.shape[-1] - 1)
    f0, t0 = np.take_along_axis(fpr, last, -1)[..., 0], np.take_along_axis(tpr, last, -1)[..., 0]
    best = t0
    if interpolate:
        f1, t1 = np.take_along_axis(fpr, nxt, -1)[..., 0], np.take_along_axis(tpr, nxt, -1)[..., 0]
        step = f1 > f0  # the next point exceeds the budget (or there is none: f1 == f0)
        share = np.where(step, (target - f0) / np.where(step, f1 - f0, 1.0), 0.0)
        best = t0 + np.clip(share, 0.0, 1.0) * (t1 - t0)
    best = np.maximum(best, 0.0)
    return float(best) if np.ndim(best) == 0 else best


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
    s, _ = _orderable(s)
    out = {"auc": float(skm.roc_auc_score(y, s))}
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
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
    scores: ArrayLike, labels: ArrayLike, threshold: float, level: float = 0.95
) -> dict[str, Any]:
    """Accuracy, precision, recall and balanced accuracy of ``score >= threshold``, with
    Wilson intervals.

    The threshold is fixed before the test rows are seen (chosen on the calibration half),
    so each rate is a binomial proportion of independent test rows: accuracy of all rows,
    precision of the rows predicted "member", recall of the members. The Wilson interval
    keeps close to nominal coverage on tens of rows, where the normal (Wald) interval does
    not. Rows that are not independent (images of one identity) make these intervals too
    narrow (MINT's identity-disjoint halves; see docs/statistics.md).

    Args:
        scores: (N,) attack scores, higher = more likely member.
        labels: (N,) 1 for members, 0 for non-members.
        threshold: predict "member" where ``score >= threshold``.
        level: coverage of the intervals (the key suffix follows it: ``_ci95``).

    Returns:
        ``{"accuracy", "precision", "recall", "balanced_accuracy"}`` as Python floats.
        Precision is 0 when nothing is predicted a member (scikit-learn's
        ``zero_division=0``); balanced accuracy is None when a class is absent. Also
        ``accuracy_ci95``, ``precision_ci95``, ``recall_ci95`` (``[low, high]``, None
        without rows) and ``accuracy_counts``, ``precision_counts``, ``recall_counts``
        (``[k, n]``: successes and trials).
    """
    s = _scores(scores)
    y = _labels(labels, len(s))
    pred = (s >= threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, pred, labels=[0, 1]).ravel())
    recall = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / (tn + fp) if tn + fp else None
    balanced = 0.5 * (recall + specificity) if specificity is not None and tp + fn else None
    out: dict[str, Any] = {
        "accuracy": (tp + tn) / len(y) if len(y) else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": recall,
        "balanced_accuracy": balanced,
    }
    for name, k, n in (
        ("accuracy", tp + tn, len(y)),
        ("precision", tp, tp + fp),
        ("recall", tp, tp + fn),
    ):
        ci = wilson_interval(k, n, level)
        out[ci_key(name, level)] = None if ci is None else list(ci)
        out[f"{name}_counts"] = [int(k), int(n)]
    return out


def tied_fraction(scores: ArrayLike, labels: ArrayLike) -> float:
    """Share of rows whose score equals the score of a row of the other class.

    Only ties across the classes matter to a ROC curve: their order is undetermined, and
    the curve crosses them diagonally (a randomised threshold).
    """
    s, y = _inputs(scores, labels)
    shared = np.intersect1d(s[y == 1], s[y == 0])
    return float(np.isin(s, shared).mean())


def reached_operating_point(
    scores: ArrayLike, labels: ArrayLike, fpr: float, level: float = 0.95
) -> dict[str, Any]:
    """The operating point a test can actually reach at or below ``fpr``, with exact intervals.

    With ``n`` non-members the reachable false positive rates are ``k / n``: the point
    reported is the largest ``k / n <= fpr`` (``k = floor(n * fpr)``, possibly 0: TPR at
    zero false positives), and the TPR there is the interpolated ROC's
    (:func:`tpr_at_fpr`). Its interval is Clopper-Pearson on the members (exact, and with
    a fractional count when the cut falls in a tie block): it covers the true TPR of the
    threshold the test chose, conditional on the non-members, since members are drawn
    independently of them. The FPR that threshold truly has is uncertain as well:
    Clopper-Pearson on ``k`` of ``n`` non-members.

    Args:
        scores: (N,) test scores, higher = more likely member.
        labels: (N,) 1 for members, 0 for non-members.
        fpr: the target FPR.
        level: coverage of the intervals.

    Returns:
        With ``key = tpr_key(fpr) + "_reached"``: ``key`` (the TPR), ``key_fpr`` (k / n),
        ``key_ci95`` and ``key_fpr_ci95`` (``[low, high]``), ``key_counts``
        (``[members above the cut, members, false positives, non-members]``, the first
        fractional under ties).
    """
    fprs, tprs, _ = roc_curve(scores, labels)
    y = _labels(labels)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    k = int(np.floor(n_neg * fpr + 1e-9))
    reached = k / n_neg
    tpr = tpr_at_fpr(fprs, tprs, reached)
    hits = tpr * n_pos
    key = f"{tpr_key(fpr)}_reached"
    return {
        key: tpr,
        f"{key}_fpr": reached,
        ci_key(key, level): list(clopper_pearson_interval(hits, n_pos, level)),
        ci_key(f"{key}_fpr", level): list(clopper_pearson_interval(k, n_neg, level)),
        f"{key}_counts": [float(hits), n_pos, k, n_neg],
    }


def evaluate_scores(
    scores: ArrayLike,
    labels: ArrayLike,
    is_calibration: ArrayLike,
    fprs: Sequence[float] = DEFAULT_FPRS,
    level: float = 0.95,
) -> dict[str, Any]:
    """All metrics of one attack: threshold from calibration rows, metrics on test rows.

    Args:
        scores: (N,) attack scores, higher = more likely member.
        labels: (N,) 1 for members, 0 for non-members.
        is_calibration: (N,) bool mask of calibration rows (see
            :func:`miabench.metrics.calibration.calibration_split`).
        fprs: target FPRs for the TPR@FPR keys.
        level: coverage of the binomial intervals.

    Returns:
        ``auc``, one ``tpr_at_*pct_fpr`` per FPR, ``accuracy``, ``precision``, ``recall``,
        ``balanced_accuracy`` (with the ``_ci95`` and ``_counts`` of
        :func:`threshold_metrics`), ``threshold``, ``n_calibration``, ``n_test``,
        ``n_test_members``, ``n_test_nonmembers``. Without calibration rows the threshold
        metrics are None and the ROC metrics use every row. A TPR at an FPR the test rows
        cannot resolve (fewer than ``MIN_NONMEMBERS_PER_FPR / fpr`` non-members,
        :func:`observable`) is None, and ``tpr_at_*pct_fpr_note`` says why; every FPR also
        gets the operating point the test reaches (:func:`reached_operating_point`,
        ``tpr_at_*pct_fpr_reached*``). ``tied_fraction`` is the share of test rows tied
        across the classes, and ``ties_note`` flags it above :data:`HEAVY_TIES_SHARE`.

    Raises:
        ValueError: NaN scores, mismatched lengths, or a split lacking a class.
    """
    s = _scores(scores)
    y = _labels(labels, len(s))
    if hasattr(is_calibration, "detach"):  # a torch tensor
        is_calibration = is_calibration.detach().cpu().numpy()
    cal = np.asarray(is_calibration, dtype=bool).reshape(-1)
    if cal.shape[0] != len(s):
        raise ValueError(f"{len(s)} scores but {cal.shape[0]} calibration flags")
    test = ~cal if cal.any() else np.ones_like(cal)
    if not test.any():
        raise ValueError("every row is a calibration row; nothing left to test on")
    out: dict[str, Any] = roc_metrics(s[test], y[test], fprs)
    n_pos, n_neg = int(y[test].sum()), int(test.sum() - y[test].sum())
    for f in fprs:
        if not observable(f, n_neg):
            out[tpr_key(f)] = None
            out[note_key(tpr_key(f))] = unobservable_note(f, n_neg)
        out.update(reached_operating_point(s[test], y[test], f, level))
    ties = tied_fraction(s[test], y[test])
    out["tied_fraction"] = ties
    if ties > HEAVY_TIES_SHARE:
        out["ties_note"] = (
            f"{ties:.0%} of test rows tie with a row of the other class: TPRs at an FPR are "
            "read off the interpolated ROC (a randomised threshold through the ties)"
        )
    if cal.any():
        threshold = choose_threshold(s[cal], y[cal])
        out.update(threshold_metrics(s[test], y[test], threshold, level))
    else:
        threshold = None
        out.update(accuracy=None, precision=None, recall=None, balanced_accuracy=None)
    out.update(threshold=threshold, n_calibration=int(cal.sum()), n_test=int(test.sum()))
    out.update(n_test_members=n_pos, n_test_nonmembers=n_neg)
    return out
