"""HRNetV2 for semantic segmentation (Wang et al., TPAMI 2020; Sun et al. 2019).

timm provides the HRNet backbone; no library ships the segmentation head, which is small:
the four branch outputs are upsampled to the highest resolution (1/4), concatenated, mixed
by a 1x1 conv + BN + ReLU and classified by a 1x1 conv (the "HRNetV2" representation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from miabench.utils.pretrained import TimmWeights, loads_imagenet
from miabench.victims.nets.seg_backbones import timm_features


@loads_imagenet(TimmWeights)
class HRNetV2(nn.Module):
    """HRNet backbone (timm, ``features_only``) + the HRNetV2 head.

    Args:
        arch: ``hrnet_w18`` or ``hrnet_w48`` (any timm HRNet).
        num_classes: output channels.
        weights: ``imagenet | <path> | none`` (see :func:`timm_features`).
        dropout: dropout before the classifier (0 as in the published head).
    """

    def __init__(
        self,
        arch: str = "hrnet_w48",
        num_classes: int = 150,
        weights: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        # feature_location='' gives the raw branch outputs (18/36/72/144 channels for W18),
        # not the classification head's "incre" blocks; index 0 is the stride-2 stem.
        self.backbone, self.info = timm_features(arch, weights, (1, 2, 3, 4), feature_location="")
        width = sum(self.backbone.feature_info.channels())
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(width, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H/4, W/4); the victim upsamples them to the label size."""
        feats = self.backbone(x)
        size = feats[0].shape[-2:]
        up = [feats[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]
        ]
        return self.head(torch.cat(up, dim=1))

    def describe(self) -> dict[str, Any]:
        """Backbone and its weights."""
        return dict(self.info)
