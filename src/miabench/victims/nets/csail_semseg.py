"""UperNet and HRNetV2 in CSAILVision/semantic-segmentation-pytorch's structure (issue 28).

CSAIL releases its ADE20K models (``ade20k-resnet50-upernet``, ``ade20k-resnet101-upernet``,
``ade20k-hrnetv2-c1``) as an encoder and a decoder state dict (``encoder_epoch_<N>.pth``,
``decoder_epoch_<N>.pth``). The project's own UperNet (smp) and HRNetV2 (timm + a 1x1 head)
differ from them in structure (smp's decoder, a plain ResNet stem, a different head; timm's
HRNet fuses branches with nearest upsampling where CSAIL's uses bilinear), so their weights
cannot be renamed into those. These classes rebuild the authors' structure, with their
module names, so that :mod:`miabench.checkpoints.segmentation` loads their files exactly:

* :class:`CSAILResnet`: CSAIL's ResNet with a deep stem (3x3 convs 64-64-128, ``conv1``
  ... ``bn3``); timm's ResNet with ``stem_type="deep", stem_width=64`` computes the same
  function, so its blocks are reused and only the stem is re-exposed under CSAIL's names.
* :class:`CSAILHRNet`: HRNetV2 with bilinear branch fusion (no library ships this variant;
  the residual blocks are torchvision's, which have CSAIL's names and math).
* :class:`UPerNetHead` and :class:`C1Head`: the two decoders.

Select them in a victim config with ``victim.module.net._target_`` (see the comments in
``conf/victim/upernet50.yaml`` and ``hrnetv2_w48.yaml``).
"""

from __future__ import annotations

import re
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from miabench.utils.weights import NONE, WeightsRecord, build_with_weights


def conv3x3_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """CSAIL's ``conv3x3_bn_relu``: keys ``0.weight`` (conv) and ``1.*`` (BN)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _up(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _csail_weights(
    weights: str, build: Any, what: str, url: str
) -> tuple[nn.Module, WeightsRecord]:
    """``none`` or a local copy of CSAIL's ImageNet encoder file (extra keys such as ``fc.*``
    dropped, every encoder key required); ``imagenet`` is not in any library's hub."""
    if str(weights) == "imagenet":
        raise ValueError(
            f"victim.module.net.weights: CSAIL's ImageNet {what} is not in a library hub; "
            f"download {url} and set weights=<that file>, or weights=none"
        )
    return build_with_weights(
        weights,
        lambda pretrained: build(),
        what=f"CSAIL's {what}",
        imagenet=url,
        key="victim.module.net.weights",
        select=lambda model, state: (
            model,
            {k: v for k, v in state.items() if k in model.state_dict()},
        ),
    )


class CSAILResnet(nn.Module):
    """CSAIL's ``Resnet`` encoder (deep stem, no dilation) returning the four stages.

    Args:
        arch: ``resnet18``, ``resnet50`` or ``resnet101`` (the CSAIL encoders of that name).
    """

    def __init__(self, arch: str = "resnet50") -> None:
        super().__init__()
        net = timm.create_model(arch, stem_type="deep", stem_width=64, num_classes=0)
        # timm's deep stem is Sequential(conv, bn, act, conv, bn, act, conv) + bn1: the same
        # function as CSAIL's conv1/bn1/relu1 ... conv3/bn3/relu3, exposed under their names
        self.conv1, self.bn1, _, self.conv2, self.bn2, _, self.conv3 = net.conv1
        self.bn3 = net.bn1
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.channels = [info["num_chs"] for info in net.feature_info[1:]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.maxpool(F.relu(self.bn3(self.conv3(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class HighResolutionModule(nn.Module):
    """One HRNet module: four BasicBlocks per branch, then every branch fused into each.

    Fusion as CSAIL (and HRNet-Semantic-Segmentation) computes it: lower resolutions are
    mapped by 1x1 conv + BN and resized *bilinearly* to the target; higher resolutions are
    reduced by stride-2 3x3 conv + BN (+ ReLU except the last).
    """

    def __init__(self, channels: list[int], blocks: int = 4) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(blocks)]) for c in channels
        )
        fuse = []
        for i, ci in enumerate(channels):
            row: list[nn.Module | None] = []
            for j, cj in enumerate(channels):
                if j > i:
                    row.append(_conv_bn(cj, ci, 1, 1, relu=False))
                elif j == i:
                    row.append(None)  # identity; CSAIL keeps the slot, so the indices match
                else:
                    steps = [_conv_bn(cj, cj, 3, 2, relu=True) for _ in range(i - j - 1)]
                    row.append(nn.Sequential(*steps, _conv_bn(cj, ci, 3, 2, relu=False)))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        x = [branch(xi) for branch, xi in zip(self.branches, x, strict=True)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = x[0] if i == 0 else row[0](x[0])
            for j in range(1, len(x)):
                if j == i:
                    y = y + x[j]
                elif j > i:
                    y = y + _up(row[j](x[j]), x[i].shape[-2:])
                else:
                    y = y + row[j](x[j])
            out.append(F.relu(y))
        return out


def _transition(before: list[int], after: list[int]) -> nn.ModuleList:
    """CSAIL's transition layer: adapt existing branches, add one stride-2 branch."""
    layers: list[nn.Module | None] = []
    for i, c in enumerate(after):
        if i < len(before):
            layers.append(_conv_bn(before[i], c, 3, 1, relu=True) if before[i] != c else None)
        else:
            layers.append(nn.Sequential(_conv_bn(before[-1], c, 3, 2, relu=True)))
    return nn.ModuleList(layers)


class CSAILHRNet(nn.Module):
    """CSAIL's ``hrnetv2`` encoder: returns the four branches resized to 1/4, concatenated.

    Args:
        width: channels of the highest-resolution branch (48 in CSAIL's release; the
            branches have ``width * (1, 2, 4, 8)``).
        stage_modules: HighResolutionModules in stages 2, 3, 4 (CSAIL: 1, 4, 3).
        blocks: BasicBlocks per branch and module (CSAIL: 4).
    """

    def __init__(
        self, width: int = 48, stage_modules: tuple[int, int, int] = (1, 4, 3), blocks: int = 4
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        down = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
        self.layer1 = nn.Sequential(
            Bottleneck(64, 64, downsample=down), *[Bottleneck(256, 64) for _ in range(3)]
        )
        chans = [width * 2**i for i in range(4)]
        self.transition1 = _transition([256], chans[:2])
        self.stage2 = nn.Sequential(
            *[HighResolutionModule(chans[:2], blocks) for _ in range(stage_modules[0])]
        )
        self.transition2 = _transition(chans[:2], chans[:3])
        self.stage3 = nn.Sequential(
            *[HighResolutionModule(chans[:3], blocks) for _ in range(stage_modules[1])]
        )
        self.transition3 = _transition(chans[:3], chans)
        self.stage4 = nn.Sequential(
            *[HighResolutionModule(chans, blocks) for _ in range(stage_modules[2])]
        )
        self.channels = [sum(chans)]

    @staticmethod
    def _enter(transition: nn.ModuleList, ys: list[torch.Tensor]) -> list[torch.Tensor]:
        # existing branches pass (or adapt); the new one is made from the lowest resolution
        return [
            (t(ys[i] if i < len(ys) else ys[-1]) if t is not None else ys[i])
            for i, t in enumerate(transition)
        ]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(F.relu(self.bn2(self.conv2(x))))
        ys = self.stage2(self._enter(self.transition1, [x]))
        ys = self.stage3(self._enter(self.transition2, ys))
        ys = self.stage4(self._enter(self.transition3, ys))
        size = ys[0].shape[-2:]
        return [torch.cat([ys[0], *[_up(y, size) for y in ys[1:]]], 1)]


class UPerNetHead(nn.Module):
    """CSAIL's ``UPerNet`` decoder: PPM on the last stage, FPN, fusion, classifier.

    Args:
        num_classes: output channels.
        fpn_inplanes: channels of the four encoder stages.
        fpn_dim: FPN width (512 for CSAIL's ``upernet``, 256 for ``upernet_lite``).
        ppm_dim: width of each pyramid-pooling branch (512 in CSAIL's code).
        pool_scales: pyramid-pooling output sizes.
    """

    def __init__(
        self,
        num_classes: int,
        fpn_inplanes: list[int],
        fpn_dim: int = 512,
        ppm_dim: int = 512,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
    ) -> None:
        super().__init__()
        fc_dim = fpn_inplanes[-1]
        self.ppm_pooling = nn.ModuleList(nn.AdaptiveAvgPool2d(s) for s in pool_scales)
        self.ppm_conv = nn.ModuleList(
            _conv_bn(fc_dim, ppm_dim, 1, 1, relu=True) for _ in pool_scales
        )
        self.ppm_last_conv = conv3x3_bn_relu(fc_dim + len(pool_scales) * ppm_dim, fpn_dim)
        self.fpn_in = nn.ModuleList(
            _conv_bn(c, fpn_dim, 1, 1, relu=True) for c in fpn_inplanes[:-1]
        )
        self.fpn_out = nn.ModuleList(
            nn.Sequential(conv3x3_bn_relu(fpn_dim, fpn_dim)) for _ in fpn_inplanes[:-1]
        )
        self.conv_last = nn.Sequential(
            conv3x3_bn_relu(len(fpn_inplanes) * fpn_dim, fpn_dim),
            nn.Conv2d(fpn_dim, num_classes, 1),
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        top = feats[-1]
        # CSAIL resizes each pooled map back first and convolves it at full size
        pooled = [
            conv(_up(pool(top), top.shape[-2:]))
            for pool, conv in zip(self.ppm_pooling, self.ppm_conv, strict=True)
        ]
        f = self.ppm_last_conv(torch.cat([top, *pooled], 1))
        pyramid = [f]
        for i in reversed(range(len(feats) - 1)):
            lateral = self.fpn_in[i](feats[i])
            f = lateral + _up(f, lateral.shape[-2:])
            pyramid.append(self.fpn_out[i](f))
        pyramid.reverse()
        size = pyramid[0].shape[-2:]
        return self.conv_last(torch.cat([pyramid[0], *[_up(p, size) for p in pyramid[1:]]], 1))


class C1Head(nn.Module):
    """CSAIL's ``C1`` decoder: 3x3 conv-BN-ReLU to ``fc_dim // 4``, 1x1 classifier."""

    def __init__(self, num_classes: int, fc_dim: int) -> None:
        super().__init__()
        self.cbr = conv3x3_bn_relu(fc_dim, fc_dim // 4)
        self.conv_last = nn.Conv2d(fc_dim // 4, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.conv_last(self.cbr(feats[-1]))


class CSAILSegmentation(nn.Module):
    """An encoder and a decoder as CSAIL pairs them; logits at 1/4 of the input size.

    :mod:`miabench.checkpoints.segmentation` loads ``encoder_epoch_<N>.pth`` into
    :attr:`encoder` and ``decoder_epoch_<N>.pth`` into :attr:`decoder`.
    """

    #: the checkpoint layout this structure reads (recorded in results.json)
    layout = "csail_semseg"
    encoder: nn.Module
    decoder: nn.Module
    info: dict[str, Any]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H/4, W/4); the victim resizes them bilinearly, as CSAIL does."""
        return self.decoder(self.encoder(x))

    def describe(self) -> dict[str, Any]:
        """Structure and encoder weights."""
        return dict(self.info)


class CSAILUPerNet(CSAILSegmentation):
    """CSAIL's ``resnet50``/``resnet101`` encoder + ``upernet`` decoder.

    Args mirror the project's :class:`~miabench.victims.nets.seg_backbones.UPerNet`, so a
    config switches by ``_target_`` (plus ``weights``):

    Args:
        encoder: ``resnet50`` or ``resnet101`` (``resnet18`` also exists in CSAIL's code).
        num_classes: output channels (150 for ADE20K).
        weights: ``none`` or CSAIL's ImageNet encoder file (``resnet50-imagenet.pth``).
        decoder_channels: FPN width (CSAIL ``upernet``: 512).
        ppm_channels: width of the pyramid-pooling branches (CSAIL: 512).
    """

    def __init__(
        self,
        encoder: str = "resnet50",
        num_classes: int = 150,
        weights: str = NONE,
        decoder_channels: int = 512,
        ppm_channels: int = 512,
    ) -> None:
        super().__init__()
        url = f"http://sceneparsing.csail.mit.edu/model/pretrained_resnet/{encoder}-imagenet.pth"
        self.encoder, record = _csail_weights(
            weights, lambda: CSAILResnet(encoder), f"{encoder} encoder", url
        )
        self.decoder = UPerNetHead(
            num_classes, self.encoder.channels, decoder_channels, ppm_channels
        )
        self.info = {"structure": "csail_upernet", "backbone": encoder, **record.describe()}


class CSAILHRNetV2(CSAILSegmentation):
    """CSAIL's ``hrnetv2`` encoder + ``c1`` decoder.

    Args mirror the project's :class:`~miabench.victims.nets.hrnetv2.HRNetV2`:

    Args:
        arch: ``hrnet_w<width>`` (CSAIL releases ``hrnet_w48``).
        num_classes: output channels.
        weights: ``none`` or CSAIL's ``hrnetv2_w48-imagenet.pth``.
        dropout: must be 0: CSAIL's C1 head has no dropout.
        stage_modules: HRNet modules in stages 2-4 (CSAIL: 1, 4, 3; fewer for tests).
        blocks: BasicBlocks per branch (CSAIL: 4).
    """

    def __init__(
        self,
        arch: str = "hrnet_w48",
        num_classes: int = 150,
        weights: str = NONE,
        dropout: float = 0.0,
        stage_modules: tuple[int, int, int] = (1, 4, 3),
        blocks: int = 4,
    ) -> None:
        super().__init__()
        found = re.fullmatch(r"hrnet_w(\d+)", arch)
        if found is None:
            raise ValueError(f"victim.module.net.arch: expected hrnet_w<width>, got {arch!r}")
        if dropout:
            raise ValueError("victim.module.net.dropout: CSAIL's C1 head has none; set 0")
        url = "http://sceneparsing.csail.mit.edu/model/pretrained_resnet/hrnetv2_w48-imagenet.pth"
        width = int(found.group(1))
        self.encoder, record = _csail_weights(
            weights, lambda: CSAILHRNet(width, tuple(stage_modules), blocks), f"{arch} encoder", url
        )
        self.decoder = C1Head(num_classes, self.encoder.channels[-1])
        self.info = {"structure": "csail_hrnetv2", "backbone": arch, **record.describe()}
