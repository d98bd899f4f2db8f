"""What one attack score means, read against the calibration half of the audited run.

The attack stage splits each run's members and non-members into a calibration half and a
test half (``scores.csv``'s ``split`` column). The server reads a new image's score against
the calibration half only:

- a membership probability from a calibrator fitted on the calibration scores (isotonic
  regression or Platt scaling, sklearn), with members and non-members weighted to equal total
  mass, i.e. a prior of 0.5: the calibration half's own member share (64 of 264 in the
  defenses setting) is an accident of the experiment, not a statement about the world;
- its bootstrap interval: the calibrator refitted on resamples of the calibration half
  (members and non-members resampled separately), the percentile interval of the refits'
  probabilities;
- the score's percentile among calibration members and among calibration non-members;
- the decision at fixed false-positive rates, with thresholds taken from the calibration
  non-members' scores, only where enough of them resolve the rate
  (:data:`~miabench.metrics.roc.MIN_NONMEMBERS_PER_FPR`, the same 10/x rule as the metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from miabench.metrics.intervals import percentile_interval
from miabench.metrics.roc import observable, unobservable_note

#: the membership prior the probabilities assume (stated on every report)
PRIOR = 0.5


class Isotonic:
    """Isotonic regression of membership on the score (monotone, no shape assumed)."""

    name = "isotonic regression (sklearn)"

    def fit(self, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> Isotonic:
        self.model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self.model.fit(scores, labels, sample_weight=weights)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        # the fitted step function read with np.interp, as IsotonicRegression.predict reads
        # it (linear between its thresholds, clipped beyond them), without that call's
        # input validation: ~0.3 ms a call, 60 ms of every report for 200 bootstrap refits
        x = np.clip(np.asarray(scores, dtype=np.float64), self.model.X_min_, self.model.X_max_)
        return np.interp(x, self.model.X_thresholds_, self.model.y_thresholds_)


class Platt:
    """Platt scaling: a logistic regression of membership on the standardised score."""

    name = "Platt scaling (sklearn logistic regression)"

    def fit(self, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> Platt:
        # standardised so the regulariser's default strength means the same at every scale
        self.mean, self.scale = float(scores.mean()), float(scores.std()) or 1.0
        self.model = LogisticRegression()
        self.model.fit(((scores - self.mean) / self.scale)[:, None], labels, sample_weight=weights)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        # the logistic of the fitted line, as LogisticRegression.predict_proba computes it
        # for two classes, without its input validation (see Isotonic.predict)
        x = (np.asarray(scores, dtype=np.float64) - self.mean) / self.scale
        return expit(x * float(self.model.coef_[0, 0]) + float(self.model.intercept_[0]))


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Weights giving members and non-members equal total mass (a 0.5 prior)."""
    n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
    return np.where(labels == 1, PRIOR / n_pos, (1 - PRIOR) / n_neg) * len(labels)


@dataclass
class Threshold:
    """The decision rule at one false-positive rate: member when score > ``threshold``."""

    fpr: float
    threshold: float | None
    reached_fpr: float | None
    note: str | None


def fpr_threshold(nonmember_scores: np.ndarray, fpr: float) -> Threshold:
    """Score threshold whose calibration false-positive rate is at most ``fpr``.

    Members are decided by ``score > threshold``, with the threshold the ``k+1``-th highest
    non-member score (``k = floor(fpr * n)``), so at most ``k`` calibration non-members
    exceed it. None (with a note) where the calibration non-members cannot resolve ``fpr``.
    """
    n = len(nonmember_scores)
    if not observable(fpr, n):
        return Threshold(fpr, None, None, unobservable_note(fpr, n, unit="calibration non-members"))
    ordered = np.sort(nonmember_scores)[::-1]
    k = int(np.floor(fpr * n + 1e-9))
    threshold = float(ordered[min(k, n - 1)])
    return Threshold(fpr, threshold, float(np.mean(nonmember_scores > threshold)), None)


def percentile_of(sorted_scores: np.ndarray, score: float) -> float:
    """Mid-rank percentile (0-100) of ``score`` among ``sorted_scores`` (ties count half)."""
    below = np.searchsorted(sorted_scores, score, side="left")
    not_above = np.searchsorted(sorted_scores, score, side="right")
    return float(100.0 * (below + not_above) / (2 * len(sorted_scores)))


class ScoreCalibration:
    """A calibration half's scores, and what a new score means against them.

    Args:
        scores: the calibration half's attack scores (higher = more likely a member).
        labels: 1 member, 0 non-member.
        calibrator: a fresh calibrator per call (:class:`Isotonic`, :class:`Platt`).
        fprs: false-positive rates of the decisions.
        n_bootstrap: refits for the probability's interval.
        level: coverage of that interval.
        seed: seed of the resampling.

    Raises:
        ValueError: when the calibration half lacks members or non-members.
    """

    def __init__(
        self,
        scores: np.ndarray,
        labels: np.ndarray,
        calibrator: Any,
        fprs: Sequence[float] = (0.01, 0.1),
        n_bootstrap: int = 200,
        level: float = 0.95,
        seed: int = 0,
    ) -> None:
        scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=int)
        keep = np.isfinite(scores)
        scores, labels = scores[keep], labels[keep]
        if labels.sum() == 0 or labels.sum() == len(labels):
            raise ValueError("the calibration half needs members and non-members")
        self.members = np.sort(scores[labels == 1])
        self.nonmembers = np.sort(scores[labels == 0])
        self.level = level
        self.method = calibrator().name
        self.model = calibrator().fit(scores, labels, balanced_weights(labels))
        rng = np.random.default_rng(seed)
        pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        self.replicates = []
        for _ in range(n_bootstrap):
            rows = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
            y = labels[rows]
            self.replicates.append(calibrator().fit(scores[rows], y, balanced_weights(y)))
        self.thresholds = [fpr_threshold(self.nonmembers, f) for f in fprs]

    def describe(self, score: float) -> dict[str, Any]:
        """What ``score`` means: probability with interval, percentiles, decisions."""
        x = np.array([score], dtype=np.float64)
        probability = float(self.model.predict(x)[0])
        interval = None
        if self.replicates:
            values = np.array([float(m.predict(x)[0]) for m in self.replicates])
            interval = [float(v) for v in percentile_interval(values, self.level)]
        decisions = {}
        for t in self.thresholds:
            decisions[f"{t.fpr:g}"] = {
                "member": None if t.threshold is None else bool(score > t.threshold),
                "threshold": t.threshold,
                "calibration_fpr": t.reached_fpr,
                "note": t.note,
            }
        return {
            "membership_probability": probability,
            "probability_interval": interval,
            "percentile_among_members": percentile_of(self.members, score),
            "percentile_among_nonmembers": percentile_of(self.nonmembers, score),
            "decision_at_fpr": decisions,
        }

    def summary(self) -> dict[str, Any]:
        """How the probabilities were calibrated (shown beside every report)."""
        return {
            "method": self.method,
            "prior": PRIOR,
            "n_calibration_members": len(self.members),
            "n_calibration_nonmembers": len(self.nonmembers),
            "n_bootstrap": len(self.replicates),
            "level": self.level,
        }
