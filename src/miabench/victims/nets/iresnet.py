"""IResNet: InsightFace's "improved" ResNet for face recognition (Deng et al., ArcFace).

Written here because neither timm nor torchvision ships it: the block order differs from
torchvision's ResNet (BN-Conv-BN-PReLU-Conv-BN with the stride on the second conv), the stem
keeps full resolution (3x3, stride 1), and the head is BN-Dropout-FC-BN to a 512-d embedding
instead of global pooling. Layer names (``conv1``, ``layer1``..``layer4``, ``features``)
follow InsightFace's ``iresnet.py`` so their published state dicts load (``fc_scale`` and
widths permitting).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: blocks per stage of the published depths.
DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """BN-Conv3x3-BN-PReLU-Conv3x3(stride)-BN plus the (projected) shortcut."""

    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in, eps=eps)
        self.conv1 = _conv3x3(c_in, c_out)
        self.bn2 = nn.BatchNorm2d(c_out, eps=eps)
        self.prelu = nn.PReLU(c_out)
        self.conv2 = _conv3x3(c_out, c_out, stride)
        self.bn3 = nn.BatchNorm2d(c_out, eps=eps)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(c_out, eps=eps),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


class IResNet(nn.Module):
    """InsightFace IResNet backbone: image → L2-unnormalised embedding.

    Args:
        layers: blocks per stage (see :data:`DEPTHS`).
        widths: channels of the stem and the four stages (InsightFace: 64, 64, 128, 256, 512).
        in_channels: image channels (3 for faces; 1 for the grayscale proxy).
        input_size: side of the (square) input; 112 for aligned faces. Each stage halves it,
            so the flattened map entering the FC layer is ``widths[-1] * (input_size/16)^2``.
        num_features: embedding size (512 as published).
        dropout: dropout before the FC layer (0 as published for Glint360k/MS1MV2).
    """

    #: names of the modules whose outputs auditors may read, in forward order.
    stage_names: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
        layers: Sequence[int] = DEPTHS[50],
        widths: Sequence[int] = (64, 64, 128, 256, 512),
        in_channels: int = 3,
        input_size: int = 112,
        num_features: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or len(widths) != 5:
            raise ValueError(f"IResNet needs 4 stage depths and 5 widths, got {layers}, {widths}")
        if input_size % 16:
            raise ValueError(
                f"input_size must be a multiple of 16 (4 stride-2 stages), got {input_size}"
            )
        self.input_size = input_size
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0], eps=1e-5)
        self.prelu = nn.PReLU(widths[0])
        c_in = widths[0]
        for i, (depth, width) in enumerate(zip(layers, widths[1:], strict=True), start=1):
            blocks = [IBasicBlock(c_in, width, stride=2)]
            blocks += [IBasicBlock(width, width) for _ in range(depth - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            c_in = width
        side = input_size // 16
        self.bn2 = nn.BatchNorm2d(c_in, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(c_in * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        # InsightFace fixes the embedding BN's scale at 1 (only the shift learns).
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        self.num_features = num_features
        self.widths = tuple(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))


def iresnet(depth: int, **kwargs: object) -> IResNet:
    """IResNet-18/34/50/100 as InsightFace defines them (``kwargs`` go to :class:`IResNet`)."""
    if depth not in DEPTHS:
        raise ValueError(f"IResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
    return IResNet(layers=DEPTHS[depth], **kwargs)  # type: ignore[arg-type]


def iresnet_test(**kwargs: object) -> IResNet:
    """Tiny IResNet for tests and the CPU proxy (one block per stage, narrow widths).

    Defaults: widths 8-16-32-64-64, 32x32 input, 64-d embedding; ``kwargs`` override.
    """
    params: dict[str, object] = {
        "layers": (1, 1, 1, 1),
        "widths": (8, 16, 32, 64, 64),
        "input_size": 32,
        "num_features": 64,
    }
    params.update(kwargs)
    return IResNet(**params)  # type: ignore[arg-type]
