"""PraNet and Inf-Net in their authors' structure (DengPingFan/PraNet, DengPingFan/Inf-Net).

The released ``PraNet-19.pth`` and ``Inf-Net-100.pth`` are plain state dicts of the authors'
``PraNet`` and ``Inf_Net`` classes. The project's :mod:`.pranet` / :mod:`.infnet` differ:
their convolution blocks end in a ReLU where the authors' ``BasicConv2d`` (which defines a
ReLU but never calls it) does not, their backbone is timm's plain-stem Res2Net, and the
module names differ. These classes rebuild the released networks, with their names:

* ``resnet``: the authors' ``res2net50_v1b_26w_4s`` is timm's ``res2net50d`` (deep 32-32-64
  stem, average-pool shortcut, same ``convs``/``bns`` names), kept whole (its ``fc`` is in
  the released files too);
* ``BasicConv2d`` (conv + BN, no activation), ``RFB_modified``, ``aggregation`` and the
  reverse-attention convolutions ``ra{4,3,2}_conv*`` (plus Inf-Net's ``edge_conv*``), wired
  as the authors' ``forward`` wires them (fixed scale factors: inputs divisible by 32).

Select them with ``victim.module.net._target_`` (see ``conf/victim/pranet.yaml``).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from miabench.utils.weights import NONE, build_with_weights

RES2NET_URL = (
    "https://shanghuagao.oss-cn-beijing.aliyuncs.com/res2net/res2net50_v1b_26w_4s-3cf99910.pth"
)


class BasicConv2d(nn.Module):
    """The authors' ``BasicConv2d``: conv (no bias) + BN; no activation in ``forward``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int] = 0,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            cin, cout, kernel_size, padding=padding, dilation=dilation, bias=False
        )
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class RFBModified(nn.Module):
    """The authors' ``RFB_modified``: four branches of growing dilation + a residual."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(cin, cout, 1))
        for index, k in ((1, 3), (2, 5), (3, 7)):
            branch = nn.Sequential(
                BasicConv2d(cin, cout, 1),
                BasicConv2d(cout, cout, (1, k), padding=(0, k // 2)),
                BasicConv2d(cout, cout, (k, 1), padding=(k // 2, 0)),
                BasicConv2d(cout, cout, 3, padding=k, dilation=k),
            )
            setattr(self, f"branch{index}", branch)
        self.conv_cat = BasicConv2d(4 * cout, cout, 3, padding=1)
        self.conv_res = BasicConv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [getattr(self, f"branch{i}")(x) for i in range(4)]
        return F.relu(self.conv_cat(torch.cat(branches, 1)) + self.conv_res(x))


class Aggregation(nn.Module):
    """The authors' ``aggregation`` (parallel partial decoder), 2x bilinear, corners aligned."""

    def __init__(self, c: int, n_class: int = 1) -> None:
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"conv_upsample{i}", BasicConv2d(c, c, 3, padding=1))
        self.conv_upsample5 = BasicConv2d(2 * c, 2 * c, 3, padding=1)
        self.conv_concat2 = BasicConv2d(2 * c, 2 * c, 3, padding=1)
        self.conv_concat3 = BasicConv2d(3 * c, 3 * c, 3, padding=1)
        self.conv4 = BasicConv2d(3 * c, 3 * c, 3, padding=1)
        self.conv5 = nn.Conv2d(3 * c, n_class, 1)

    @staticmethod
    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        up = self.up
        x2_1 = self.conv_upsample1(up(x1)) * x2
        x3_1 = self.conv_upsample2(up(up(x1))) * self.conv_upsample3(up(x2)) * x3
        x2_2 = self.conv_concat2(torch.cat((x2_1, self.conv_upsample4(up(x1))), 1))
        x3_2 = self.conv_concat3(torch.cat((x3_1, self.conv_upsample5(up(x2_2))), 1))
        return self.conv5(self.conv4(x3_2))


def _scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    # the authors call F.interpolate(mode='bilinear') without align_corners: False
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def _res2net(arch: str, weights: str) -> tuple[nn.Module, dict[str, Any]]:
    """The whole timm Res2Net (with ``fc``: the released files hold it)."""
    if str(weights) == "imagenet":
        raise ValueError(
            "victim.module.net.weights: the authors' ImageNet Res2Net-v1b is not in a library "
            f"hub; download {RES2NET_URL} and set weights=<that file>, or weights=none"
        )
    model, record = build_with_weights(
        weights,
        lambda pretrained: timm.create_model(arch, pretrained=False),
        what=f"the authors' Res2Net ({arch})",
        imagenet=RES2NET_URL,
        key="victim.module.net.weights",
    )
    return model, {"backbone": arch, **record.describe()}


class PraNetRelease(nn.Module):
    """The authors' ``PraNet`` (Res2Net-50 v1b): loads ``PraNet-19.pth`` as released.

    Args:
        weights: ``none`` or the authors' ``res2net50_v1b_26w_4s-3cf99910.pth``.
        arch: timm name of the backbone (``res2net50d`` = the authors' Res2Net-50 v1b).
        rfb_channels: the authors' ``channel`` (32).

    Returns (forward):
        ``{"out": lateral_map_2, "aux": [lateral_map_5, lateral_map_4, lateral_map_3]}``,
        logits at the input size.
    """

    layout = "pranet_release"

    def __init__(
        self, weights: str = NONE, arch: str = "res2net50d", rfb_channels: int = 32
    ) -> None:
        super().__init__()
        self.resnet, self.info = _res2net(arch, weights)
        self._heads(rfb_channels, guide=0)
        self.agg1 = Aggregation(rfb_channels)

    def _heads(self, c: int, guide: int) -> None:
        c2, c3, c4 = (self.resnet.feature_info[i]["num_chs"] for i in (2, 3, 4))
        self.rfb2_1, self.rfb3_1, self.rfb4_1 = (
            RFBModified(c2, c),
            RFBModified(c3, c),
            RFBModified(c4, c),
        )
        self.ra4_conv1 = BasicConv2d(c4, 256, 1)
        self.ra4_conv2 = BasicConv2d(256 + guide, 256, 5, padding=2)
        self.ra4_conv3 = BasicConv2d(256, 256, 5, padding=2)
        self.ra4_conv4 = BasicConv2d(256, 256, 5, padding=2)
        self.ra4_conv5 = BasicConv2d(256, 1, 1)
        for level, cin in ((3, c3), (2, c2)):
            setattr(self, f"ra{level}_conv1", BasicConv2d(cin, 64, 1))
            setattr(self, f"ra{level}_conv2", BasicConv2d(64 + guide, 64, 3, padding=1))
            setattr(self, f"ra{level}_conv3", BasicConv2d(64, 64, 3, padding=1))
            setattr(self, f"ra{level}_conv4", BasicConv2d(64, 1, 3, padding=1))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        r = self.resnet
        x = r.maxpool(r.act1(r.bn1(r.conv1(x))))
        x1 = r.layer1(x)
        x2 = r.layer2(x1)
        x3 = r.layer3(x2)
        return [x1, x2, x3, r.layer4(x3)]

    def _reverse(
        self, level: int, prior: torch.Tensor, feat: torch.Tensor, guide: torch.Tensor | None
    ) -> torch.Tensor:
        """One reverse-attention branch: ``1 - sigmoid(prior)`` weights ``feat``."""
        conv = [getattr(self, f"ra{level}_conv{i}") for i in range(1, 6 if level == 4 else 5)]
        x = conv[0]((1 - torch.sigmoid(prior)).expand(-1, feat.shape[1], -1, -1) * feat)
        if guide is not None:
            x = torch.cat((x, guide), 1)
        for c in conv[1:-1]:
            x = F.relu(c(x))
        return conv[-1](x) + prior

    def _decode(
        self, feats: list[torch.Tensor], agg: nn.Module, edge: torch.Tensor | None
    ) -> dict[str, Any]:
        _, x2, x3, x4 = feats
        ra5 = agg(self.rfb4_1(x4), self.rfb3_1(x3), self.rfb2_1(x2))

        def guide(factor: float) -> torch.Tensor | None:
            return None if edge is None else _scale(edge, factor)

        s4 = self._reverse(4, _scale(ra5, 0.25), x4, guide(1 / 8))
        s3 = self._reverse(3, _scale(s4, 2), x3, guide(1 / 4))
        s2 = self._reverse(2, _scale(s3, 2), x2, guide(1 / 2))
        return {"out": _scale(s2, 8), "aux": [_scale(ra5, 8), _scale(s4, 32), _scale(s3, 16)]}

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        return self._decode(self._features(x), self.agg1, None)

    def describe(self) -> dict[str, Any]:
        """Structure, backbone and its weights."""
        return {"structure": self.layout, **self.info}


class InfNetRelease(PraNetRelease):
    """The authors' ``Inf_Net`` (Res2Net-50 v1b): loads ``Inf-Net-100.pth`` as released.

    Args:
        weights: ``none`` or the authors' ``res2net50_v1b_26w_4s-3cf99910.pth``.
        arch: timm name of the backbone (``res2net50d`` = the authors' Res2Net-50 v1b).
        rfb_channels: the authors' ``channel`` (32).
        edge_channels: width of the edge guidance (64 in the release).

    Returns (forward):
        PraNet's maps and ``"edge"``: ``lateral_edge``, at the input size.
    """

    layout = "infnet_release"

    def __init__(
        self,
        weights: str = NONE,
        arch: str = "res2net50d",
        rfb_channels: int = 32,
        edge_channels: int = 64,
    ) -> None:
        nn.Module.__init__(self)
        self.resnet, self.info = _res2net(arch, weights)
        self._heads(rfb_channels, guide=edge_channels)
        self.ParDec = Aggregation(rfb_channels)
        c1 = self.resnet.feature_info[1]["num_chs"]
        self.edge_conv1 = BasicConv2d(c1, edge_channels, 1)
        self.edge_conv2 = BasicConv2d(edge_channels, edge_channels, 3, padding=1)
        self.edge_conv3 = BasicConv2d(edge_channels, edge_channels, 3, padding=1)
        self.edge_conv4 = BasicConv2d(edge_channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        feats = self._features(x)
        edge = self.edge_conv3(self.edge_conv2(self.edge_conv1(feats[0])))
        maps = self._decode(feats, self.ParDec, edge)
        return {**maps, "edge": _scale(self.edge_conv4(edge), 4)}
