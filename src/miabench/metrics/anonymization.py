"""Utility an anonymizer cares about, at its deployment threshold.

A detector used to blur faces or plates is judged by the boxes it returns at the threshold
it is deployed with: precision and recall of those boxes (one-to-one matches at IoU ≥ 0.5,
as mAP@0.5 counts them) and the *anonymization recall*, the share of the true face / plate
pixels that the returned boxes cover, i.e. that would actually be masked (a missed pixel is
a privacy leak of its own). mAP@0.5 and mAP@[.5:.95] come from torchmetrics'
``MeanAveragePrecision`` (``victims/detection.py``). For a binary segmenter the
anonymization recall is the pixel recall of the face class (torchmetrics' ``BinaryRecall``).

torchmetrics has no metric for the pixel coverage of a set of boxes nor for precision and
recall of thresholded boxes (its detection metrics are COCO averages over thresholds), so
these are written here as :class:`torchmetrics.Metric` states summed over a role's images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torchmetrics import Metric
from torchvision.ops import box_iou

#: what :class:`AnonymizationMetric` can report
KEYS = ("precision", "recall", "anonymization_recall")


def box_matches(pred: torch.Tensor, truth: torch.Tensor, iou_threshold: float = 0.5) -> int:
    """True positives: one-to-one matches (Hungarian, maximal total IoU) with IoU ≥ the
    threshold between (n, 4) predicted and (m, 4) true xyxy boxes."""
    if len(pred) == 0 or len(truth) == 0:
        return 0
    ious = box_iou(pred.double().cpu(), truth.double().cpu())
    rows, cols = linear_sum_assignment(ious.numpy(), maximize=True)
    return int((ious[rows, cols] >= iou_threshold).sum())


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H, W) bool: the pixels whose centre lies inside any of the (n, 4) xyxy boxes."""
    ys = torch.arange(height, dtype=torch.float64, device=boxes.device) + 0.5
    xs = torch.arange(width, dtype=torch.float64, device=boxes.device) + 0.5
    b = boxes.reshape(-1, 4).double()
    inside_y = (ys[None, :] >= b[:, 1:2]) & (ys[None, :] < b[:, 3:4])  # (n, H)
    inside_x = (xs[None, :] >= b[:, 0:1]) & (xs[None, :] < b[:, 2:3])  # (n, W)
    return (inside_y[:, :, None] & inside_x[:, None, :]).any(0)


def coverage(pred: torch.Tensor, truth: torch.Tensor, height: int, width: int) -> tuple[int, int]:
    """``(covered, total)``: true-box pixels inside a predicted box, and all true-box pixels
    (overlapping true boxes counted once)."""
    true = box_mask(truth, height, width)
    covered = true & box_mask(pred, height, width)
    return int(covered.sum()), int(true.sum())


def image_anonymization_recall(
    pred: torch.Tensor, truth: torch.Tensor, height: int, width: int
) -> float:
    """Share of one image's true-box pixels covered by the predicted boxes; 1.0 for an
    image without faces (nothing to mask, nothing leaked)."""
    covered, total = coverage(pred, truth, height, width)
    return covered / total if total else 1.0


class AnonymizationMetric(Metric):
    """Precision, recall or anonymization recall of a detector's boxes at its deployment
    threshold, summed over every image of a role.

    ``update(preds, target, image_size)`` takes torchmetrics' detection format: ``preds``
    per image ``{"boxes", "scores"}``, ``target`` per image ``{"boxes"}`` (plus optional
    ``iscrowd``: faces marked 1 are left out, and so are the returned boxes on them, as
    mAP's crowd rule does).

    Args:
        key: ``precision`` (matched / returned boxes), ``recall`` (matched / true boxes) or
            ``anonymization_recall`` (covered / true-box pixels).
        score_threshold: the deployment threshold: boxes below it are not returned.
        iou_threshold: lowest IoU of a match.

    ``compute`` is 0/0 → 1.0 (nothing returned: no false box; nothing to find: none missed).
    """

    full_state_update = False

    def __init__(
        self,
        key: str = "anonymization_recall",
        score_threshold: float = 0.5,
        iou_threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if key not in KEYS:
            raise ValueError(f"AnonymizationMetric: key must be one of {KEYS}, got {key!r}")
        self.key, self.score_threshold, self.iou_threshold = key, score_threshold, iou_threshold
        for name in ("matched", "returned", "true", "covered_px", "true_px"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        preds: Sequence[dict[str, torch.Tensor]],
        target: Sequence[dict[str, torch.Tensor]],
        image_size: tuple[int, int],
    ) -> None:
        height, width = image_size
        for pred, truth in zip(preds, target, strict=True):
            boxes = pred["boxes"][pred["scores"] >= self.score_threshold].reshape(-1, 4)
            true = truth["boxes"].reshape(-1, 4)
            if "iscrowd" in truth:
                crowd = true[truth["iscrowd"] != 0]
                true = true[truth["iscrowd"] == 0]
                if len(crowd) and len(boxes):
                    # a box on an ignored face is no false positive, as mAP's iscrowd rule
                    on_crowd = box_iou(boxes.double(), crowd.double()).max(1).values
                    boxes = boxes[on_crowd < self.iou_threshold]
            self.matched += box_matches(boxes, true, self.iou_threshold)
            self.returned += len(boxes)
            self.true += len(true)
            covered, total = coverage(boxes, true, height, width)
            self.covered_px += covered
            self.true_px += total

    def compute(self) -> torch.Tensor:
        num, den = {
            "precision": (self.matched, self.returned),
            "recall": (self.matched, self.true),
            "anonymization_recall": (self.covered_px, self.true_px),
        }[self.key]
        return num / den if den > 0 else torch.ones((), dtype=torch.float64)
