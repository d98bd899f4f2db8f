"""Label-only membership inference: agreement of hard answers under augmentations.

Choquette-Choo et al., "Label-Only Membership Inference Attacks" (ICML 2021), data
augmentation attack: a model answers the augmented copies of a training sample (flips,
translations by ``d`` pixels) correctly more often than those of an unseen sample, and the
attacker needs only the hard label to see it. Here the hard answer is what a deployed
anonymizer returns: a detector's boxes at its deployment threshold (no scores) or a
segmenter's binary mask (no probabilities). Per augmentation the attack queries the victim
(the ``query`` signal, :data:`~miabench.victims.base.QUERY`, passed through the defense's
``attacker_view``), measures how well the answer agrees with the ground truth under the
same transform, and scores the sample by the mean agreement.

The augmentations are the paper's: the sample itself, the ``4d`` translations with
``|dx| + |dy| = d`` (zero fill), each with and without a horizontal flip. The truth is
moved with the image (the flipped / shifted boxes clipped to the frame, the mask shifted
with the filled band marked unlabelled) rather than the answer moved back: the two agree
wherever the content is visible, and content pushed out of the frame is neither asked for
nor counted. The transforms are written here because the attack must apply the same exact
integer shift to an image, its boxes and its mask; torchvision's v2 affine resamples
(and would need a tv_tensors wrapper per call for three kinds of targets).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou

from miabench.attacks.base import Attack
from miabench.victims.base import QUERY, Signals

MEASURES = ("iou", "f1")
MASK_MEASURES = ("iou", "dice")


@dataclass(frozen=True)
class Augmentation:
    """One geometric augmentation: an optional horizontal flip, then an integer shift.

    Args:
        flip: mirror left-right first.
        dx: shift to the right in pixels (negative: left); uncovered pixels are filled.
        dy: shift down in pixels.
    """

    flip: bool = False
    dx: int = 0
    dy: int = 0

    @property
    def name(self) -> str:
        return f"{'flip_' if self.flip else ''}dx{self.dx}_dy{self.dy}"

    def image(self, x: torch.Tensor, fill: float | int = 0) -> torch.Tensor:
        """Apply to (..., H, W) images or masks; uncovered pixels get ``fill``."""
        if self.flip:
            x = x.flip(-1)
        h, w = x.shape[-2:]
        out = torch.full_like(x, fill)
        # the part of the source that stays in the frame, and where it lands
        ys, yd = (
            slice(max(0, -self.dy), h - max(0, self.dy)),
            slice(max(0, self.dy), h - max(0, -self.dy)),
        )
        xs, xd = (
            slice(max(0, -self.dx), w - max(0, self.dx)),
            slice(max(0, self.dx), w - max(0, -self.dx)),
        )
        out[..., yd, xd] = x[..., ys, xs]
        return out

    def boxes(self, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(n, 4) xyxy boxes of an H x W image → the same objects in the augmented image,
        clipped to the frame; boxes pushed out of it (no area left) are dropped."""
        b = boxes.reshape(-1, 4).to(torch.float64)
        if self.flip:
            b = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], dim=1)
        b = b + b.new_tensor([self.dx, self.dy, self.dx, self.dy])
        b[:, 0::2] = b[:, 0::2].clamp(0, width)
        b[:, 1::2] = b[:, 1::2].clamp(0, height)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        return b[keep]


def augmentations(flip: bool = True, shift: int = 1) -> list[Augmentation]:
    """The paper's set: identity and the ``4d`` shifts with ``|dx| + |dy| = d``, each also
    flipped when ``flip`` (``2 (4d + 1)`` queries; ``4d + 1`` without flips).

    Raises:
        ValueError: ``shift`` is negative.
    """
    if shift < 0:
        raise ValueError(f"attack label_only: shift must be >= 0, got {shift}")
    shifts = [(0, 0)]
    for dx in range(-shift, shift + 1):
        rest = shift - abs(dx)
        shifts += sorted({(dx, rest), (dx, -rest)}) if shift else []
    flips = (False, True) if flip else (False,)
    return [Augmentation(f, dx, dy) for f in flips for dx, dy in dict.fromkeys(shifts)]


def box_agreement(
    pred: torch.Tensor, truth: torch.Tensor, measure: str = "iou", iou_threshold: float = 0.5
) -> torch.Tensor:
    """How well one image's hard boxes agree with its true boxes (1 = exactly).

    Boxes are matched one to one maximising the total IoU (Hungarian assignment).

    Args:
        pred: (n, 4) xyxy boxes the victim returned (already thresholded).
        truth: (m, 4) xyxy true boxes.
        measure: ``iou``: the matched IoUs summed over ``max(n, m)`` (every missed or
            spurious box counts 0); ``f1``: 2 TP / (n + m), matches with IoU ≥
            ``iou_threshold`` counting as true positives.
        iou_threshold: lowest IoU of a true positive (``f1`` only).

    Returns:
        float64 scalar in [0, 1]; 1 when both are empty.
    """
    n, m = len(pred), len(truth)
    if n == 0 or m == 0:
        return torch.tensor(float(n == m), dtype=torch.float64)
    ious = box_iou(pred.double().cpu(), truth.double().cpu())
    rows, cols = linear_sum_assignment(ious.numpy(), maximize=True)
    matched = ious[rows, cols]
    if measure == "iou":
        return matched.sum() / max(n, m)
    tp = (matched >= iou_threshold).sum().double()
    return 2 * tp / (n + m)


def hard_mask(output: torch.Tensor) -> torch.Tensor:
    """(B, H, W) int64 labels of a segmentation answer: a (B, 1, H, W) foreground
    probability thresholded at 0.5 (a binary mask stays as it is), or the argmax class of
    (B, K, H, W) scores."""
    if output.shape[1] == 1:
        return (output[:, 0] >= 0.5).long()
    return output.argmax(1)


def mask_agreement(
    pred: torch.Tensor, truth: torch.Tensor, num_classes: int, ignore_index: int, measure: str
) -> torch.Tensor:
    """Per-image agreement of hard label maps with the truth, unlabelled pixels left out.

    Args:
        pred: (B, H, W) int64 predicted labels.
        truth: (B, H, W) int64 true labels.
        num_classes: 1 or 2 (binary: the foreground class only) or K > 2 (the mean over
            the classes present in the prediction or the truth).
        ignore_index: label of pixels left out.
        measure: ``iou`` (Jaccard) or ``dice``.

    Returns:
        (B,) float64 in [0, 1]; 1 where neither the prediction nor the truth has any
        foreground (binary) or no pixel is labelled.
    """
    valid = truth != ignore_index
    classes = [1] if num_classes <= 2 else list(range(num_classes))
    scores, present = [], []
    for k in classes:
        p, t = (pred == k) & valid, (truth == k) & valid
        inter = (p & t).flatten(1).sum(1).double()
        union = (p | t).flatten(1).sum(1).double()
        total = p.flatten(1).sum(1).double() + t.flatten(1).sum(1).double()
        value = inter / union.clamp_min(1) if measure == "iou" else 2 * inter / total.clamp_min(1)
        scores.append(value)
        present.append(union > 0)
    scores_t, present_t = torch.stack(scores, 1), torch.stack(present, 1).double()
    n_present = present_t.sum(1)
    mean = (scores_t * present_t).sum(1) / n_present.clamp_min(1)
    return torch.where(n_present > 0, mean, torch.ones_like(mean))


class LabelOnly(Attack):
    """Base of the label-only attacks: query every augmentation, average the agreement.

    Subclasses say how the truth follows an augmentation and how an answer agrees with it.

    Args:
        name: short name used in result files and tables.
        flip: also query the mirrored copies.
        shift: translation distance ``d`` in pixels (0: no translations).
    """

    def __init__(self, name: str, flip: bool = True, shift: int = 1) -> None:
        super().__init__(name)
        self.flip, self.shift = flip, shift
        self.augmentations = augmentations(flip, shift)

    @abstractmethod
    def agreement(self, answer: Signals, signals: Signals, aug: Augmentation) -> torch.Tensor:
        """(B,) agreement of the answer to the ``aug``-augmented queries with the truth."""

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """``score`` = mean agreement over the augmentations; ``agreement_original`` (the
        unaugmented query) and ``agreement_min`` as diagnostics."""
        if QUERY not in signals:
            raise ValueError(
                f"attack '{self.name}' sends queries of its own: the signals lack {QUERY!r} "
                "(iterate the victim with Victim.iter_signals)"
            )
        query = signals[QUERY]
        images = signals["input"]
        values = torch.stack(
            [
                self.agreement(query(aug.image(images)), signals, aug).double().cpu()
                for aug in self.augmentations
            ],
            dim=1,
        )
        return {
            "score": values.mean(1),
            "agreement_original": values[:, 0],
            "agreement_min": values.min(1).values,
        }

    def describe(self) -> dict[str, Any]:
        """Name, class and the augmentations queried."""
        return {
            **super().describe(),
            "flip": self.flip,
            "shift": self.shift,
            "queries": len(self.augmentations),
        }


class LabelOnlyDetection(LabelOnly):
    """Label-only attack on a detector that returns boxes only.

    Args:
        name: short name used in result files and tables.
        flip: also query the mirrored copies.
        shift: translation distance ``d`` in pixels.
        score_threshold: the deployment threshold: only boxes at or above it are answers
            (the attack never reads a score otherwise; under ``defense=output_boxes`` every
            returned box has score 1).
        measure: ``iou`` or ``f1`` (see :func:`box_agreement`).
        iou_threshold: lowest IoU of a true positive (``f1``).
    """

    requires = ("input", "boxes", "ignore")

    def __init__(
        self,
        name: str = "label_only",
        flip: bool = True,
        shift: int = 1,
        score_threshold: float = 0.5,
        measure: str = "iou",
        iou_threshold: float = 0.5,
    ) -> None:
        super().__init__(name, flip, shift)
        if measure not in MEASURES:
            raise ValueError(f"attack '{name}': measure must be one of {MEASURES}, got {measure!r}")
        self.score_threshold, self.measure, self.iou_threshold = (
            score_threshold,
            measure,
            iou_threshold,
        )

    def agreement(self, answer: Signals, signals: Signals, aug: Augmentation) -> torch.Tensor:
        height, width = signals["input"].shape[-2:]
        values = []
        for det, boxes, ignore in zip(
            answer["detections"], signals["boxes"], signals["ignore"], strict=True
        ):
            pred = det["boxes"][det["scores"] >= self.score_threshold].reshape(-1, 4)
            truth = aug.boxes(boxes[~ignore], height, width)
            values.append(box_agreement(pred, truth, self.measure, self.iou_threshold))
        return torch.stack(values)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "score_threshold": self.score_threshold,
            "measure": self.measure,
            "iou_threshold": self.iou_threshold,
        }


class LabelOnlySegmentation(LabelOnly):
    """Label-only attack on a segmenter that returns a (binary) mask only.

    Args:
        name: short name used in result files and tables.
        flip: also query the mirrored copies.
        shift: translation distance ``d`` in pixels.
        ignore_index: label of unlabelled pixels (also given to the band a shift uncovers).
        measure: ``iou`` or ``dice`` (see :func:`mask_agreement`).
    """

    requires = ("input", "target")

    def __init__(
        self,
        name: str = "label_only",
        flip: bool = True,
        shift: int = 1,
        ignore_index: int = 255,
        measure: str = "iou",
    ) -> None:
        super().__init__(name, flip, shift)
        if measure not in MASK_MEASURES:
            raise ValueError(
                f"attack '{name}': measure must be one of {MASK_MEASURES}, got {measure!r}"
            )
        self.ignore_index, self.measure = ignore_index, measure

    def agreement(self, answer: Signals, signals: Signals, aug: Augmentation) -> torch.Tensor:
        output = answer["output"]
        truth = aug.image(signals["target"], fill=self.ignore_index)
        return mask_agreement(
            hard_mask(output),
            truth.to(output.device),
            output.shape[1],
            self.ignore_index,
            self.measure,
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "ignore_index": self.ignore_index, "measure": self.measure}
