"""Reconstruction, predictability and membership errors for segmentation victims.

Shafran, Peleg & Hoshen (ICCV 2021) attack segmentation victims the way they attack image
translation: the *reconstruction error* of a query is how far the victim's answer is from
the ground truth, and the *membership error* subtracts a *predictability error* that says
how easy that ground truth is to predict from the query image at all. The authors' public
code (avitalsh/reconst_based_MIA) only covers the translation case (per-sample L1, and the
linear predictor of ``predictability_error.py``); for segmentation this module follows the
same recipe with the label map in place of the target image:

* reconstruction error (``error``): ``loss`` = mean per-pixel cross-entropy of the victim's
  class probabilities (binary cross-entropy for a binary victim), or ``pixel_error`` =
  ``1 - pixel accuracy``; unlabelled pixels (``ignore_index``) are left out;
* predictability error: the core attack's per-image linear regression
  (:mod:`miabench.attacks.predictability`: frozen ResNet layer1-4 features of the query
  image upsampled to 56x56, fit on a random 70% of the pixels) predicting the one-hot
  ground truth (label map resized by nearest neighbour, ignored pixels all-zero), scored on
  the other 30% of the labelled pixels by ``l1`` = half the per-pixel L1 distance between
  the prediction and the one-hot vector (the total-variation distance, in [0, 1] for a
  distribution-like prediction; absent classes do not dilute it), or ``pixel_error`` =
  ``1 - accuracy`` of the prediction's argmax;
* membership error = reconstruction error - predictability error; score = its negation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from miabench.attacks.base import Attack
from miabench.attacks.predictability import (
    FeatureBackbone,
    batched_min_norm_lstsq_predict,
    membership_error_columns,
    pixel_split,
    reduced_features,
    split_sizes,
)
from miabench.victims.base import Signals
from miabench.victims.segmentation import pixel_accuracy, pixel_loss

ERRORS = ("loss", "pixel_error")
PREDICTABILITY_ERRORS = ("l1", "pixel_error")


def segmentation_error(
    output: torch.Tensor, target: torch.Tensor, error: str = "loss", ignore_index: int = 255
) -> torch.Tensor:
    """Per-sample reconstruction error of a segmentation output.

    Args:
        output: (B, K, H, W) class probabilities, or (B, 1, H, W) foreground probability.
        target: (B, H, W) int64 labels.
        error: ``loss`` (mean per-pixel CE / BCE) or ``pixel_error`` (1 - pixel accuracy).
        ignore_index: label of unlabelled pixels (left out).

    Returns:
        (B,) float64.
    """
    if error == "loss":
        return pixel_loss(output, target, ignore_index)
    if error == "pixel_error":
        return 1.0 - pixel_accuracy(output, target, ignore_index)
    raise ValueError(f"error must be one of {ERRORS}, got {error!r}")


def one_hot_ground_truth(
    target: torch.Tensor, num_classes: int, size: int, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label maps resized (nearest) to ``size`` x ``size`` as one-hot pixel rows.

    Returns:
        ``(y, valid)``: (B, size*size, K) float64 one-hot (ignored pixels all-zero) and
        (B, size*size) bool, rows in row-major pixel order.
    """
    small = F.interpolate(target[:, None].float(), size=(size, size), mode="nearest-exact")
    small = small[:, 0].long().flatten(1)
    valid = small != ignore_index
    if (small[valid] >= num_classes).any() or (small[valid] < 0).any():
        raise ValueError(
            f"ground truth has labels outside 0..{num_classes - 1} (ignore {ignore_index})"
        )
    y = F.one_hot(torch.where(valid, small, 0), num_classes).to(torch.float64)
    return y * valid.unsqueeze(-1), valid


class SegmentationPredictability:
    """Per-sample predictability error of a one-hot ground truth, batched on a device.

    Args:
        backbone: frozen feature extractor of the query images.
        measure: ``l1`` or ``pixel_error`` (see the module docstring).
        fit_fraction: share of the pixels that fit the regression (0.7).
        feature_size: side of the feature grid and of the resized label map (56).
        seed: with the sample id, seeds the pixel split.
        ignore_index: label of unlabelled pixels.
        batch_size: images solved together.
    """

    def __init__(
        self,
        backbone: FeatureBackbone,
        measure: str = "l1",
        fit_fraction: float = 0.7,
        feature_size: int = 56,
        seed: int = 0,
        ignore_index: int = 255,
        batch_size: int = 8,
    ) -> None:
        if measure not in PREDICTABILITY_ERRORS:
            raise ValueError(
                f"predictability measure must be one of {PREDICTABILITY_ERRORS}, got {measure!r}"
            )
        split_sizes(feature_size * feature_size, fit_fraction)  # validates fit_fraction
        self.backbone = backbone
        self.measure = measure
        self.fit_fraction = fit_fraction
        self.feature_size = feature_size
        self.seed = seed
        self.ignore_index = ignore_index
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(
        self,
        images: torch.Tensor,
        target: torch.Tensor,
        num_classes: int,
        sample_ids: Sequence[str],
    ) -> torch.Tensor:
        """(B,) float64 predictability errors of ``images`` and their (B, H, W) label maps."""
        if len(sample_ids) != images.shape[0] or target.shape[0] != images.shape[0]:
            raise ValueError("images, target and sample_ids must have the same batch size")
        maps = self.backbone(images)
        y, valid = one_hot_ground_truth(target, num_classes, self.feature_size, self.ignore_index)
        fit_idx, eval_idx = pixel_split(sample_ids, y.shape[1], self.fit_fraction, self.seed)
        errors = []
        for start in range(0, y.shape[0], self.batch_size):
            sl = slice(start, start + self.batch_size)
            X = reduced_features([m[sl] for m in maps], self.feature_size)
            Y, ok = y[sl].to(X.device), valid[sl].to(X.device)
            fit, held = fit_idx[sl].to(X.device), eval_idx[sl].to(X.device)

            def rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
                return torch.gather(t, 1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

            pred = batched_min_norm_lstsq_predict(rows(X, fit), rows(Y, fit), rows(X, held))
            truth = rows(Y, held)
            mask = torch.gather(ok, 1, held).to(torch.float64)
            if self.measure == "l1":
                per_pixel = 0.5 * (pred - truth).abs().sum(-1)
            else:
                per_pixel = (pred.argmax(-1) != truth.argmax(-1)).to(torch.float64)
            errors.append((per_pixel * mask).sum(1) / mask.sum(1).clamp_min(1.0))
        return torch.cat(errors)

    def describe(self) -> dict[str, Any]:
        """Measure and split settings that shape the errors (recorded with the scores)."""
        return {
            "predictability": self.measure,
            "fit_fraction": self.fit_fraction,
            "feature_size": self.feature_size,
            "seed": self.seed,
        }


class SegmentationReconstructionError(Attack):
    """Threshold attack on a segmentation victim's reconstruction error (low = member).

    Args:
        name: short name used in result files and tables.
        error: ``loss`` (mean per-pixel CE / BCE) or ``pixel_error`` (1 - pixel accuracy).
        ignore_index: label of unlabelled pixels.
    """

    requires = ("output", "target")

    def __init__(
        self, name: str = "reconstruction", error: str = "loss", ignore_index: int = 255
    ) -> None:
        super().__init__(name)
        if error not in ERRORS:
            raise ValueError(f"attack.{name}.error must be one of {ERRORS}, got {error!r}")
        self.error = error
        self.ignore_index = ignore_index

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """``score = -reconstruction_error``."""
        err = segmentation_error(
            signals["output"], signals["target"], self.error, self.ignore_index
        )
        return {"score": -err, "reconstruction_error": err}

    def describe(self) -> dict[str, Any]:
        """Name, class, error measure."""
        return {**super().describe(), "error": self.error, "ignore_index": self.ignore_index}


class SegmentationMembershipError(SegmentationReconstructionError):
    """Membership error for segmentation: reconstruction minus predictability error.

    Args:
        name: short name used in result files and tables.
        error: reconstruction measure, ``loss`` or ``pixel_error``.
        predictability: predictability measure, ``l1`` or ``pixel_error``.
        weights: backbone weights, ``imagenet``, a local state_dict path or ``none``.
        arch: torchvision ResNet-family backbone (``wide_resnet50_2`` as in the core attack).
        fit_fraction: share of pixels that fit the linear predictor.
        feature_size: side of the feature grid (56).
        seed: seed of the per-sample pixel split.
        batch_size: images per regression solve.
        ignore_index: label of unlabelled pixels.
    """

    requires = ("input", "target", "output")

    def __init__(
        self,
        name: str = "membership_error",
        error: str = "loss",
        predictability: str = "l1",
        weights: str = "imagenet",
        arch: str = "wide_resnet50_2",
        fit_fraction: float = 0.7,
        feature_size: int = 56,
        seed: int = 0,
        batch_size: int = 8,
        ignore_index: int = 255,
    ) -> None:
        super().__init__(name, error, ignore_index)
        self.backbone = FeatureBackbone(arch=arch, weights=weights)
        self.predictability = SegmentationPredictability(
            self.backbone,
            predictability,
            fit_fraction,
            feature_size,
            seed,
            ignore_index,
            batch_size,
        )

    def setup(self, device: torch.device | str) -> None:
        """Move the backbone to ``device``; features and solves then run there."""
        super().setup(device)
        self.backbone.to(self.device)

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Score one batch; diagnostics are the two error terms and their difference."""
        output = signals["output"]
        rec = segmentation_error(output, signals["target"], self.error, self.ignore_index)
        num_classes = max(output.shape[1], 2)  # a binary victim's truth is {background, foreground}
        pred = self.predictability(
            signals["input"], signals["target"], num_classes, signals["sample_id"]
        )
        return membership_error_columns(rec, pred)

    def describe(self) -> dict[str, Any]:
        """Backbone, measures and split settings that shaped the scores."""
        return {**super().describe(), **self.backbone.describe(), **self.predictability.describe()}
