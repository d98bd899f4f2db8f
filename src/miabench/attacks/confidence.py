"""Confidence threshold attack: a model is more confident on what it was trained on.

The label-free attack of Salem et al. (ML-Leaks, NDSS 2019): score a query by the victim's
highest class probability. For dense outputs (B, K, H, W) it is the mean over pixels of each
pixel's top probability, so a classifier (a 1 x 1 label map, ``victims/classifier.py``) and
a segmentation victim are attacked alike; a binary (B, 1, H, W) foreground probability p
has top probability max(p, 1 - p).
"""

from __future__ import annotations

from typing import Any

import torch

from miabench.attacks.base import Attack
from miabench.victims.base import Signals

STATISTICS = ("max", "true_class")


def top_probability(output: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over pixels of the highest class probability; (B,) float64.

    Args:
        output: (B, K, H, W) class probabilities, or (B, 1, H, W) foreground probability.
    """
    if output.ndim != 4:
        raise ValueError(f"expected (B, K, H, W) probabilities, got {tuple(output.shape)}")
    p = output.to(torch.float64)
    top = torch.maximum(p[:, 0], 1.0 - p[:, 0]) if p.shape[1] == 1 else p.amax(1)
    return top.flatten(1).mean(1)


def true_class_probability(
    output: torch.Tensor, target: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """Per-sample mean over labelled pixels of the probability given to the true class.

    Args:
        output: (B, K, H, W) class probabilities, or (B, 1, H, W) foreground probability
            (a binary segmenter: the true class of a background pixel gets 1 - p).
        target: (B, H, W) int64 labels in 0..K-1 (0/1 if binary), ``ignore_index`` where
            unlabelled (left out of the mean).
        ignore_index: label of unlabelled pixels.

    Returns:
        (B,) float64; NaN for a sample without a labelled pixel.
    """
    if output.ndim != 4 or target.shape != output[:, 0].shape:
        raise ValueError(
            f"expected (B, K, H, W) probabilities and (B, H, W) labels, got "
            f"{tuple(output.shape)} and {tuple(target.shape)}"
        )
    p = output.to(torch.float64)
    if p.shape[1] == 1:
        p = torch.cat([1.0 - p, p], dim=1)
    valid = target != ignore_index
    labels = torch.where(valid, target.long(), 0)
    if int(labels.max()) >= p.shape[1] or int(labels.min()) < 0:
        raise ValueError(f"labels outside 0..{p.shape[1] - 1} (and {ignore_index} unlabelled)")
    true = p.gather(1, labels.unsqueeze(1)).squeeze(1) * valid
    return true.flatten(1).sum(1) / valid.flatten(1).sum(1)


class Confidence(Attack):
    """Threshold attack on the victim's confidence (higher = more likely a member).

    Args:
        name: short name used in result files and tables.
        statistic: ``max`` (the top probability, needs no label: ML-Leaks) or
            ``true_class`` (the probability of the ground-truth class).
        ignore_index: label of unlabelled pixels (``true_class``: left out).
    """

    def __init__(
        self, name: str = "confidence", statistic: str = "max", ignore_index: int = 255
    ) -> None:
        super().__init__(name)
        self.ignore_index = ignore_index
        if statistic not in STATISTICS:
            raise ValueError(
                f"attack.{name}.statistic must be one of {STATISTICS}, got {statistic!r}"
            )
        self.statistic = statistic
        self.requires = ("output",) if statistic == "max" else ("output", "target")

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """``score`` = the confidence; also saved as ``confidence``."""
        if self.statistic == "max":
            confidence = top_probability(signals["output"])
        else:
            confidence = true_class_probability(
                signals["output"], signals["target"], self.ignore_index
            )
        return {"score": confidence, "confidence": confidence}

    def describe(self) -> dict[str, Any]:
        """Name, class and the statistic."""
        return {**super().describe(), "statistic": self.statistic}
