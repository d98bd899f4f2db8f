"""The membership error attack: reconstruction error minus predictability error."""

from __future__ import annotations

from typing import Any

import torch

from miabench.attacks.base import Attack
from miabench.attacks.predictability.backbone import FeatureBackbone, feature_weights
from miabench.attacks.predictability.error import PredictabilityError
from miabench.attacks.reconstruction import reconstruction_error
from miabench.utils.pretrained import loads_imagenet
from miabench.victims.base import Signals


def membership_error_columns(
    reconstruction: torch.Tensor, predictability: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-sample columns of a membership-error attack: ``score = -(rec - pred)`` and the
    three terms (the image and the segmentation attacks differ only in how rec and pred are
    measured)."""
    predictability = predictability.to(reconstruction.device)
    membership = reconstruction - predictability
    return {
        "score": -membership,
        "reconstruction_error": reconstruction,
        "predictability_error": predictability,
        "membership_error": membership,
    }


@loads_imagenet(feature_weights)
class MembershipError(Attack):
    """Membership error attack: ``score = -(reconstruction error - predictability error)``.

    Args:
        name: short name used in result files and tables.
        weights: backbone weights, ``"imagenet"``, a local state_dict path or ``"none"``.
        arch: torchvision ResNet-family backbone.
        fit_fraction: share of pixels that fit the linear predictor.
        feature_size: side of the feature grid (56).
        seed: seed of the per-sample pixel split.
        dtype: dtype of the regression solve (``"float64"`` or ``"float32"``).
        batch_size: images per regression solve.
        quantize: quantise the victim output to 8-bit levels for the reconstruction error.
    """

    requires = ("input", "target", "output")

    def __init__(
        self,
        name: str = "membership_error",
        weights: str = "imagenet",
        arch: str = "wide_resnet50_2",
        fit_fraction: float = 0.7,
        feature_size: int = 56,
        seed: int = 0,
        dtype: str = "float64",
        batch_size: int = 8,
        quantize: bool = True,
    ) -> None:
        super().__init__(name)
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got '{dtype}'")
        self.quantize = quantize
        self.backbone = FeatureBackbone(arch=arch, weights=weights)
        self.predictability = PredictabilityError(
            self.backbone, fit_fraction, feature_size, seed, getattr(torch, dtype), batch_size
        )

    def setup(self, device: torch.device | str) -> None:
        """Move the backbone to ``device``; features and solves then run there."""
        super().setup(device)
        self.backbone.to(self.device)

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Score one batch; diagnostics are the two error terms and their difference."""
        rec = reconstruction_error(signals["output"], signals["target"], self.quantize)
        pred = self.predictability(signals["input"], signals["target"], signals["sample_id"])
        return membership_error_columns(rec, pred)

    def describe(self) -> dict[str, Any]:
        """Backbone, split and solver settings that shaped the scores."""
        return {
            **super().describe(),
            **self.backbone.describe(),
            **self.predictability.describe(),
            "quantize": self.quantize,
        }
