"""PraNet (Fan et al., MICCAI 2020): parallel reverse attention for polyp segmentation.

Written from the paper (no library ships it): a Res2Net-50 backbone (timm), receptive
field blocks (RFB) on the three deepest levels, a parallel partial decoder (PPD) that
aggregates them into a coarse global map, and three reverse-attention (RA) stages that,
from the deepest level up, erase what the previous map already found (``1 - sigmoid``)
and learn the missing residual. Every map is deeply supervised; the finest is the output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from miabench.utils.pretrained import TimmWeights, loads_imagenet
from miabench.victims.nets.seg_backbones import timm_features


def conv_bn_relu(
    cin: int, cout: int, kernel: int | tuple[int, int] = 3, dilation: int = 1
) -> nn.Sequential:
    """Conv (same padding) + BN + ReLU."""
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    pad = (dilation * (k[0] - 1) // 2, dilation * (k[1] - 1) // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def resize(x: torch.Tensor, like: torch.Tensor | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize to ``like``'s spatial size (or a given size)."""
    size = like.shape[-2:] if torch.is_tensor(like) else like
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class RFB(nn.Module):
    """Receptive field block: four branches of growing dilation, concatenated, + residual."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, cout, 1)])
        for k, d in ((3, 3), (5, 5), (7, 7)):
            self.branches.append(
                nn.Sequential(
                    conv_bn_relu(cin, cout, 1),
                    conv_bn_relu(cout, cout, (1, k)),
                    conv_bn_relu(cout, cout, (k, 1)),
                    conv_bn_relu(cout, cout, 3, dilation=d),
                )
            )
        self.fuse = conv_bn_relu(4 * cout, cout, 3)
        self.residual = conv_bn_relu(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fuse(torch.cat([b(x) for b in self.branches], 1)) + self.residual(x))


class PartialDecoder(nn.Module):
    """Parallel partial decoder: aggregates the three deepest RFB outputs into one map.

    Deeper features are upsampled and multiplied into shallower ones (so a location must be
    supported at every level), then concatenated level by level.
    """

    def __init__(self, c: int) -> None:
        super().__init__()
        self.up1, self.up2, self.up3 = conv_bn_relu(c, c), conv_bn_relu(c, c), conv_bn_relu(c, c)
        self.up4, self.up5 = conv_bn_relu(c, c), conv_bn_relu(2 * c, 2 * c)
        self.cat2, self.cat3 = conv_bn_relu(2 * c, 2 * c), conv_bn_relu(3 * c, 3 * c)
        self.out = nn.Sequential(conv_bn_relu(3 * c, 3 * c), nn.Conv2d(3 * c, 1, 1))

    def forward(self, deep: torch.Tensor, mid: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        mid_1 = self.up1(resize(deep, mid)) * mid
        shallow_1 = self.up2(resize(deep, shallow)) * self.up3(resize(mid, shallow)) * shallow
        mid_2 = self.cat2(torch.cat([mid_1, self.up4(resize(deep, mid))], 1))
        shallow_2 = self.cat3(torch.cat([shallow_1, self.up5(resize(mid_2, shallow))], 1))
        return self.out(shallow_2)


class ReverseAttention(nn.Module):
    """Reverse attention stage: features weighted by ``1 - sigmoid(prior)`` learn a residual.

    Args:
        cin: channels of the backbone level.
        mid: working width.
        n_convs: convolutions after the 1x1 reduction.
        kernel: their kernel size.
        guide: channels of an extra guidance map concatenated after the reduction (Inf-Net's
            edge features); 0 for PraNet.
    """

    def __init__(self, cin: int, mid: int, n_convs: int, kernel: int, guide: int = 0) -> None:
        super().__init__()
        self.reduce = conv_bn_relu(cin, mid, 1)
        layers = [conv_bn_relu(mid + guide if i == 0 else mid, mid, kernel) for i in range(n_convs)]
        self.convs = nn.Sequential(*layers)
        self.out = nn.Conv2d(mid, 1, 3, padding=1)

    def forward(
        self, feat: torch.Tensor, prior: torch.Tensor, guide: torch.Tensor | None = None
    ) -> torch.Tensor:
        prior = resize(prior, feat)
        x = self.reduce(feat * (1.0 - torch.sigmoid(prior)))
        if guide is not None:
            x = torch.cat([x, resize(guide, x)], 1)
        return self.out(self.convs(x)) + prior


@loads_imagenet(TimmWeights)
class PraNet(nn.Module):
    """PraNet on a timm Res2Net-50.

    Args:
        weights: ``imagenet | <path> | none`` for the backbone.
        arch: timm backbone (``res2net50_26w_4s`` as published).
        rfb_channels: width of the RFBs and the decoder (32 as published).

    Returns (forward):
        ``{"out": S2, "aux": [S5 (decoder), S4, S3]}``, logits at their native strides.
    """

    def __init__(
        self, weights: str = "none", arch: str = "res2net50_26w_4s", rfb_channels: int = 32
    ) -> None:
        super().__init__()
        self.backbone, self.info = timm_features(arch, weights, (2, 3, 4))
        c2, c3, c4 = self.backbone.feature_info.channels()
        self.rfb2, self.rfb3, self.rfb4 = (
            RFB(c2, rfb_channels),
            RFB(c3, rfb_channels),
            RFB(c4, rfb_channels),
        )
        self.decoder = PartialDecoder(rfb_channels)
        self.ra4 = ReverseAttention(c4, 256, 3, 5)
        self.ra3 = ReverseAttention(c3, 64, 2, 3)
        self.ra2 = ReverseAttention(c2, 64, 2, 3)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        x2, x3, x4 = self.backbone(x)
        s5 = self.decoder(self.rfb4(x4), self.rfb3(x3), self.rfb2(x2))
        s4 = self.ra4(x4, s5)
        s3 = self.ra3(x3, s4)
        s2 = self.ra2(x2, s3)
        return {"out": s2, "aux": [s5, s4, s3]}

    def describe(self) -> dict[str, Any]:
        """Backbone and its weights."""
        return dict(self.info)
