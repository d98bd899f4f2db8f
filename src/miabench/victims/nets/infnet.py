"""Inf-Net (Fan et al., IEEE TMI 2020): COVID-19 lung infection segmentation from CT.

Written from the paper (no library ships it). On a Res2Net-50 backbone (timm):

* an edge-attention branch turns the low-level (stride-4) features into edge features and
  an edge map, supervised by the boundary of the ground-truth mask;
* a parallel partial decoder aggregates RFB outputs of the three deepest levels into a
  global map S_g;
* three reverse-attention stages (deepest first) weight their level by ``1 - sigmoid`` of
  the previous map, concatenate the edge features (the "explicit edge attention") and
  learn the residual map. All maps are deeply supervised; the finest is the output.

The building blocks are PraNet's (same authors, same design), see :mod:`.pranet`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from miabench.utils.pretrained import TimmWeights, loads_imagenet
from miabench.victims.nets.pranet import RFB, PartialDecoder, ReverseAttention, conv_bn_relu
from miabench.victims.nets.seg_backbones import timm_features


@loads_imagenet(TimmWeights)
class InfNet(nn.Module):
    """Inf-Net on a timm Res2Net-50.

    Args:
        weights: ``imagenet | <path> | none`` for the backbone.
        arch: timm backbone (``res2net50_26w_4s`` as published).
        rfb_channels: width of the RFBs and the decoder (32 as published).
        edge_channels: width of the edge features (64 as published).

    Returns (forward):
        ``{"out": S2, "aux": [S_g, S4, S3], "edge": edge logits}`` at native strides.
    """

    def __init__(
        self,
        weights: str = "none",
        arch: str = "res2net50_26w_4s",
        rfb_channels: int = 32,
        edge_channels: int = 64,
    ) -> None:
        super().__init__()
        self.backbone, self.info = timm_features(arch, weights, (1, 2, 3, 4))
        c1, c2, c3, c4 = self.backbone.feature_info.channels()
        self.edge_feat = nn.Sequential(
            conv_bn_relu(c1, edge_channels, 1), conv_bn_relu(edge_channels, edge_channels, 3)
        )
        self.edge_out = nn.Conv2d(edge_channels, 1, 1)
        self.rfb2, self.rfb3, self.rfb4 = (
            RFB(c2, rfb_channels),
            RFB(c3, rfb_channels),
            RFB(c4, rfb_channels),
        )
        self.decoder = PartialDecoder(rfb_channels)
        self.ra4 = ReverseAttention(c4, 256, 3, 5, guide=edge_channels)
        self.ra3 = ReverseAttention(c3, 64, 2, 3, guide=edge_channels)
        self.ra2 = ReverseAttention(c2, 64, 2, 3, guide=edge_channels)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        x1, x2, x3, x4 = self.backbone(x)
        edge = self.edge_feat(x1)
        sg = self.decoder(self.rfb4(x4), self.rfb3(x3), self.rfb2(x2))
        s4 = self.ra4(x4, sg, edge)
        s3 = self.ra3(x3, s4, edge)
        s2 = self.ra2(x2, s3, edge)
        return {"out": s2, "aux": [sg, s4, s3], "edge": self.edge_out(edge)}

    def describe(self) -> dict[str, Any]:
        """Backbone and its weights."""
        return dict(self.info)
