"""Membership attacks on face detectors, from what a detector returns for a query image.

- :class:`DetectionLoss`: the detector's own training loss on the image (classification +
  box regression), lower for images it was trained on. The victim computes it per image in
  training mode without updating anything (see
  :func:`miabench.victims.detection.loss_mode`); the attack needs the ground-truth boxes,
  as a loss attack on any supervised model does.
- :class:`DetectionConfidence`: confidence statistics of the detections alone (no ground
  truth): the highest score, the mean of the top-k scores, the number of detections above
  a threshold. A detector is more confident on the faces it has memorised.
- :class:`BoxError`: the detection analogue of the reconstruction error: how far the
  confident detections are from the ground truth, ``(1 − mean IoU of matched boxes) +
  fraction of faces missed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou

from miabench.attacks.base import Attack
from miabench.victims.base import Signals

STATISTICS = ("max", "topk_mean", "count")


class DetectionLoss(Attack):
    """Threshold attack on the per-image detection loss (lower loss = more likely a member).

    Args:
        name: short name used in result files and tables.
        terms: loss terms to add up (e.g. ``[classification]``); ``None`` takes all the
            detector's terms.
    """

    requires = ("loss_terms",)

    def __init__(self, name: str = "detection_loss", terms: Sequence[str] | None = None) -> None:
        super().__init__(name)
        self.terms = list(terms) if terms is not None else None

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """``score = −(sum of the selected loss terms)``, each term as a diagnostic."""
        available: dict[str, torch.Tensor] = signals["loss_terms"]
        names = self.terms if self.terms is not None else sorted(available)
        missing = [t for t in names if t not in available]
        if missing:
            raise ValueError(
                f"attack '{self.name}': loss terms {missing} not computed by the victim "
                f"(it has {sorted(available)})"
            )
        loss = torch.stack([available[t].double() for t in names]).sum(0)
        return {"score": -loss, "loss": loss, **{t: available[t].double() for t in available}}

    def describe(self) -> dict[str, Any]:
        """Name, class and the loss terms added up."""
        return {**super().describe(), "terms": self.terms or "all"}


def confidence_statistics(
    scores: torch.Tensor, k: int = 5, threshold: float = 0.5
) -> dict[str, torch.Tensor]:
    """Statistics of one image's detection scores.

    Args:
        scores: (n,) detection scores (any order; n may be 0).
        k: how many top scores to average; missing detections count as 0 (the detector
            gave them no score above its post-processing threshold).
        threshold: score from which a detection is counted.

    Returns:
        ``{"max", "topk_mean", "count"}`` as float64 scalars (0 without detections).
    """
    scores = scores.double()
    top = torch.zeros(k, dtype=torch.float64, device=scores.device)
    best = scores.sort(descending=True).values[:k]
    top[: len(best)] = best
    return {
        "max": scores.max() if len(scores) else top.new_zeros(()),
        "topk_mean": top.mean(),
        "count": (scores >= threshold).sum().double(),
    }


class DetectionConfidence(Attack):
    """Threshold attack on detection confidence (more confident = more likely a member).

    Args:
        name: short name used in result files and tables.
        statistic: ``max``, ``topk_mean`` or ``count`` (see :func:`confidence_statistics`);
            all three are saved as diagnostics.
        k: number of top scores averaged by ``topk_mean``.
        threshold: score from which ``count`` counts a detection.
    """

    requires = ("detections",)

    def __init__(
        self,
        name: str = "detection_confidence",
        statistic: str = "max",
        k: int = 5,
        threshold: float = 0.5,
    ) -> None:
        super().__init__(name)
        if statistic not in STATISTICS:
            raise ValueError(
                f"attack '{name}': statistic must be one of {STATISTICS}, got {statistic!r}"
            )
        self.statistic, self.k, self.threshold = statistic, k, threshold

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """``score`` = the chosen statistic; every statistic as a diagnostic."""
        rows = [
            confidence_statistics(d["scores"], self.k, self.threshold)
            for d in signals["detections"]
        ]
        out = {s: torch.stack([r[s] for r in rows]) for s in STATISTICS}
        return {"score": out[self.statistic], **out}

    def describe(self) -> dict[str, Any]:
        """Name, class and the statistic's settings."""
        return {
            **super().describe(),
            "statistic": self.statistic,
            "k": self.k,
            "threshold": self.threshold,
        }


def box_error(
    pred: torch.Tensor, truth: torch.Tensor, iou_threshold: float = 0.5
) -> dict[str, torch.Tensor]:
    """How far one image's detections are from its ground truth.

    Detections and faces are matched one to one maximising the total IoU (Hungarian
    assignment, scipy's ``linear_sum_assignment``); pairs below ``iou_threshold`` do not
    count as matches.

    Args:
        pred: (n, 4) xyxy detections (already filtered by confidence).
        truth: (m, 4) xyxy ground-truth faces (ignored faces left out).
        iou_threshold: lowest IoU of a match.

    Returns:
        float64 scalars: ``mean_iou`` of the matches (0 when none), ``miss_rate`` (faces
        without a match / m), ``false_positives`` (unmatched detections) and
        ``box_error = (1 − mean_iou) + miss_rate``. An image without faces has
        ``box_error`` 0 when nothing is detected and 1 otherwise (all detections are false).
    """
    zero = torch.zeros((), dtype=torch.float64)
    n, m = len(pred), len(truth)
    if m == 0:
        error = zero + (1.0 if n else 0.0)
        return {
            "box_error": error,
            "mean_iou": zero,
            "miss_rate": zero,
            "false_positives": zero + n,
        }
    ious = box_iou(pred.double().cpu(), truth.double().cpu())
    matched = torch.zeros(0, dtype=torch.float64)
    if n:
        rows, cols = linear_sum_assignment(ious.numpy(), maximize=True)
        matched = ious[rows, cols]
        matched = matched[matched >= iou_threshold]
    mean_iou = matched.mean() if len(matched) else zero
    miss_rate = zero + (m - len(matched)) / m
    return {
        "box_error": (1.0 - mean_iou) + miss_rate,
        "mean_iou": mean_iou,
        "miss_rate": miss_rate,
        "false_positives": zero + (n - len(matched)),
    }


class BoxError(Attack):
    """Threshold attack on the box error (lower error = more likely a member).

    Args:
        name: short name used in result files and tables.
        score_threshold: detections below this score are not answers (a detector returns
            a long tail of low-score boxes).
        iou_threshold: lowest IoU of a match (0.5, as mAP@0.5).
    """

    requires = ("detections", "boxes", "ignore")

    def __init__(
        self, name: str = "box_error", score_threshold: float = 0.5, iou_threshold: float = 0.5
    ) -> None:
        super().__init__(name)
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """``score = −box_error``; its parts as diagnostics."""
        rows = []
        for det, boxes, ignore in zip(
            signals["detections"], signals["boxes"], signals["ignore"], strict=True
        ):
            confident = det["boxes"][det["scores"] >= self.score_threshold]
            rows.append(box_error(confident, boxes[~ignore], self.iou_threshold))
        out = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
        return {"score": -out["box_error"], **out}

    def describe(self) -> dict[str, Any]:
        """Name, class and the matching settings."""
        return {
            **super().describe(),
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
        }
