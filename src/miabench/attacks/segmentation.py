"""Reconstruction, predictability and membership errors for segmentation victims.

Shafran, Peleg & Hoshen (ICCV 2021) attack segmentation victims the way they attack image
translation: the *reconstruction error* of a query is how far the victim's answer is from
the ground truth, and the *membership error* subtracts a *predictability error* that says
how easy that ground truth is to predict from the query image at all. The authors' public
code (avitalsh/reconst_based_MIA) only covers the translation case (per-sample L1, and the
linear predictor of ``predictability_error.py``); for segmentation this module follows the
same recipe with the label map in place of the target image:

* reconstruction error: a per-pixel measure of the victim's class probabilities against the
  label map, averaged over the labelled pixels (``ignore_index`` left out);
* predictability error: the core attack's per-image linear regression
  (:mod:`miabench.attacks.predictability`: frozen ResNet layer1-4 features of the query
  image upsampled to 56x56, fit on a random 70% of the pixels) predicting the one-hot
  ground truth (label map resized by nearest neighbour), measured on the other 30%;
* membership error = reconstruction error - predictability error; score = its negation.

The difference is only meaningful when both terms are in the same units, so one per-pixel
measure (``scale``) is applied to both, and unlabelled pixels are kept out of the
regression's fit as well as out of both errors:

* ``brier`` (default): the Brier score ``sum_k (p_k - [k = label])^2`` of the victim's
  probabilities and of the linear prediction (squared error: what the regression
  minimises, so the prediction needs no calibration);
* ``cross_entropy``: ``-log p_label``; the linear prediction is turned into probabilities
  by clipping at ``EPS`` (the victim's clamp) and renormalising;
* ``error_rate``: ``1 - accuracy`` of the argmax (threshold 0.5 for a binary victim);
* ``legacy``: the definition before the scales were matched, kept for comparison: the
  reconstruction error by ``error`` (``loss`` = cross-entropy in nats, or ``pixel_error``)
  minus the predictability error by ``predictability`` (``l1`` = total-variation distance of
  the prediction to the one-hot vector, or ``pixel_error``), with unlabelled pixels entering
  the fit as all-zero rows.

``docs/segmentation.md`` compares the scales on the embedded scenes and polyps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from miabench.attacks.base import Attack
from miabench.attacks.predictability.backbone import (
    FeatureBackbone,
    feature_weights,
    strict_float32,
)
from miabench.attacks.predictability.error import (
    fit_mask,
    pixel_split,
    predict_pixels,
    split_sizes,
)
from miabench.attacks.predictability.membership_error import membership_error_columns
from miabench.metrics.segmentation import EPS, pixel_accuracy, pixel_loss
from miabench.utils.pretrained import loads_imagenet
from miabench.victims.base import Signals

ERRORS = ("loss", "pixel_error", "brier")
#: per-pixel measures of a linear prediction against the one-hot truth
PREDICTABILITY_ERRORS = ("l1", "pixel_error", "brier", "cross_entropy", "error_rate")
#: one measure for both terms of the membership error, or the legacy pair
SCALES = ("brier", "cross_entropy", "error_rate", "legacy")
#: the victim-side measure (``segmentation_error``) of each scale
_RECONSTRUCTION_OF_SCALE = {"brier": "brier", "cross_entropy": "loss", "error_rate": "pixel_error"}


def _class_probabilities(output: torch.Tensor) -> torch.Tensor:
    """(B, K, H, W) probabilities; a (B, 1, H, W) foreground probability becomes [1 - p, p]."""
    p = output.to(torch.float64)
    return torch.cat([1.0 - p, p], dim=1) if p.shape[1] == 1 else p


def pixel_brier(
    output: torch.Tensor, target: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """Per-sample mean over labelled pixels of the Brier score ``sum_k (p_k - [k = label])^2``.

    Returns:
        (B,) float64.
    """
    probs = _class_probabilities(output)
    valid = target != ignore_index
    onehot = F.one_hot(torch.where(valid, target, 0), probs.shape[1]).permute(0, 3, 1, 2)
    per_pixel = (probs - onehot).square().sum(1) * valid
    return per_pixel.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)


def segmentation_error(
    output: torch.Tensor, target: torch.Tensor, error: str = "loss", ignore_index: int = 255
) -> torch.Tensor:
    """Per-sample reconstruction error of a segmentation output.

    Args:
        output: (B, K, H, W) class probabilities, or (B, 1, H, W) foreground probability.
        target: (B, H, W) int64 labels.
        error: ``loss`` (mean per-pixel CE / BCE), ``pixel_error`` (1 - pixel accuracy) or
            ``brier`` (mean per-pixel Brier score).
        ignore_index: label of unlabelled pixels (left out).

    Returns:
        (B,) float64.
    """
    if error == "loss":
        return pixel_loss(output, target, ignore_index)
    if error == "pixel_error":
        return 1.0 - pixel_accuracy(output, target, ignore_index)
    if error == "brier":
        return pixel_brier(output, target, ignore_index)
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


def prediction_error(pred: torch.Tensor, truth: torch.Tensor, measure: str) -> torch.Tensor:
    """Per-pixel error of linear predictions (B, N, K) against one-hot rows (B, N, K).

    ``l1``: half the L1 distance (total variation); ``brier``: squared distance;
    ``cross_entropy``: ``-log`` of the true class's probability after clipping the
    prediction to [EPS, 1] and renormalising; ``pixel_error`` / ``error_rate``: argmax wrong.
    """
    if measure == "l1":
        return 0.5 * (pred - truth).abs().sum(-1)
    if measure == "brier":
        return (pred - truth).square().sum(-1)
    if measure == "cross_entropy":
        probs = pred.clamp(EPS, 1.0)
        probs = probs / probs.sum(-1, keepdim=True)
        # unlabelled rows (all-zero truth) get a finite value; callers mask them out
        return -(probs * truth).sum(-1).clamp_min(torch.finfo(probs.dtype).tiny).log()
    if measure in ("pixel_error", "error_rate"):
        return (pred.argmax(-1) != truth.argmax(-1)).to(pred.dtype)
    raise ValueError(
        f"predictability measure must be one of {PREDICTABILITY_ERRORS}, got {measure!r}"
    )


class SegmentationPredictability:
    """Per-sample predictability error of a one-hot ground truth, batched on a device.

    Args:
        backbone: frozen feature extractor of the query images.
        measure: per-pixel measure (:func:`prediction_error`).
        fit_fraction: share of the pixels that fit the regression (0.7).
        feature_size: side of the feature grid and of the resized label map (56).
        seed: with the sample id, seeds the pixel split.
        ignore_index: label of unlabelled pixels.
        batch_size: images solved together.
        fit_unlabelled: let unlabelled pixels enter the fit as all-zero targets (the legacy
            definition); otherwise only labelled pixels fit the regression.
    """

    def __init__(
        self,
        backbone: FeatureBackbone,
        measure: str = "brier",
        fit_fraction: float = 0.7,
        feature_size: int = 56,
        seed: int = 0,
        ignore_index: int = 255,
        batch_size: int = 8,
        fit_unlabelled: bool = False,
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
        self.fit_unlabelled = fit_unlabelled

    @torch.no_grad()
    def predictions(
        self,
        images: torch.Tensor,
        target: torch.Tensor,
        num_classes: int,
        sample_ids: Sequence[str],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Linear predictions of the one-hot truth at every pixel of the feature grid.

        Returns:
            ``(pred, truth, held)``: (B, P, K) predictions and one-hot truth (unlabelled
            rows all-zero), and the (B, P) bool mask of held-out labelled pixels.
        """
        if len(sample_ids) != images.shape[0] or target.shape[0] != images.shape[0]:
            raise ValueError("images, target and sample_ids must have the same batch size")
        y, valid = one_hot_ground_truth(target, num_classes, self.feature_size, self.ignore_index)
        fit_idx, _ = pixel_split(sample_ids, y.shape[1], self.fit_fraction, self.seed)
        fit = fit_mask(fit_idx, y.shape[1])
        held = ~fit & valid
        if not self.fit_unlabelled:
            fit &= valid
        with strict_float32():
            maps = self.backbone(images)
            pred = predict_pixels(maps, y, fit, self.feature_size, batch_size=self.batch_size)
        return pred, y.to(pred.device), held.to(pred.device)

    def __call__(
        self,
        images: torch.Tensor,
        target: torch.Tensor,
        num_classes: int,
        sample_ids: Sequence[str],
    ) -> torch.Tensor:
        """(B,) float64 predictability errors of ``images`` and their (B, H, W) label maps."""
        pred, truth, held = self.predictions(images, target, num_classes, sample_ids)
        per_pixel = prediction_error(pred, truth, self.measure)
        mask = held.to(per_pixel.dtype)
        return (per_pixel * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def describe(self) -> dict[str, Any]:
        """Measure and split settings that shape the errors (recorded with the scores)."""
        return {
            "predictability": self.measure,
            "fit_unlabelled": self.fit_unlabelled,
            "fit_fraction": self.fit_fraction,
            "feature_size": self.feature_size,
            "seed": self.seed,
            "cuda_tf32": False,  # strict_float32() around the backbone and the solve
        }


class SegmentationReconstructionError(Attack):
    """Threshold attack on a segmentation victim's reconstruction error (low = member).

    Args:
        name: short name used in result files and tables.
        error: ``loss`` (mean per-pixel CE / BCE), ``pixel_error`` (1 - pixel accuracy) or
            ``brier`` (mean per-pixel Brier score).
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


@loads_imagenet(feature_weights)
class SegmentationMembershipError(SegmentationReconstructionError):
    """Membership error for segmentation: reconstruction minus predictability error.

    Args:
        name: short name used in result files and tables.
        scale: the per-pixel measure of both terms (``brier``, ``cross_entropy``,
            ``error_rate``), or ``legacy`` (see the module docstring).
        error: legacy only: the reconstruction measure, ``loss`` or ``pixel_error``.
        predictability: legacy only: the predictability measure, ``l1`` or ``pixel_error``.
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
        scale: str = "brier",
        error: str | None = None,
        predictability: str | None = None,
        weights: str = "imagenet",
        arch: str = "wide_resnet50_2",
        fit_fraction: float = 0.7,
        feature_size: int = 56,
        seed: int = 0,
        batch_size: int = 8,
        ignore_index: int = 255,
    ) -> None:
        if scale not in SCALES:
            raise ValueError(f"attack.{name}.scale must be one of {SCALES}, got {scale!r}")
        if scale == "legacy":
            error, predictability = error or "loss", predictability or "l1"
            if predictability not in ("l1", "pixel_error"):
                raise ValueError(
                    f"attack.{name}.predictability must be 'l1' or 'pixel_error' with "
                    f"scale=legacy, got {predictability!r}"
                )
        elif error is not None or predictability is not None:
            raise ValueError(
                f"attack.{name}.error and .predictability only apply with scale=legacy; "
                f"scale={scale} measures both terms by {scale}"
            )
        else:
            error, predictability = _RECONSTRUCTION_OF_SCALE[scale], scale
        super().__init__(name, error, ignore_index)
        self.scale = scale
        self.backbone = FeatureBackbone(arch=arch, weights=weights)
        self.predictability = SegmentationPredictability(
            self.backbone,
            predictability,
            fit_fraction,
            feature_size,
            seed,
            ignore_index,
            batch_size,
            fit_unlabelled=scale == "legacy",
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
        """Scale, backbone, measures and split settings that shaped the scores."""
        return {
            **super().describe(),
            "scale": self.scale,
            **self.backbone.describe(),
            **self.predictability.describe(),
        }
