"""The pix2pix U-Net generator (Isola et al., CVPR 2017).

Written here because torchvision/timm/smp ship no pix2pix generator: smp's U-Net is an
encoder-decoder for segmentation with a classification backbone, not the symmetric
4x4-stride-2 conv/deconv U-Net with dropout-as-noise that pix2pix's published numbers use.
"""

from __future__ import annotations

import torch
from torch import nn

from miabench.victims.nets.norm import conv_bias, init_weights, make_norm


class _SkipBlock(nn.Module):
    """One U-Net level: down-sample, run the inner levels, up-sample, concatenate the skip."""

    def __init__(
        self,
        outer: int,
        inner: int,
        submodule: nn.Module | None,
        norm: str,
        dropout: float,
        in_channels: int | None = None,
        out_channels: int | None = None,
        outermost: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        bias = conv_bias(norm)
        in_channels = outer if in_channels is None else in_channels
        down_conv = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=bias)
        up_in = inner if submodule is None else inner * 2
        if outermost:
            down = [down_conv]
            up = [nn.ReLU(True), nn.ConvTranspose2d(up_in, out_channels, 4, 2, 1), nn.Tanh()]
        elif submodule is None:  # innermost: no norm on the 1x1 bottleneck
            down = [nn.LeakyReLU(0.2, True), down_conv]
            up = [
                nn.ReLU(True),
                nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=bias),
                make_norm(norm, outer),
            ]
        else:
            down = [nn.LeakyReLU(0.2, True), down_conv, make_norm(norm, inner)]
            up = [
                nn.ReLU(True),
                nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=bias),
                make_norm(norm, outer),
            ]
            if dropout > 0:
                up.append(nn.Dropout(dropout))
        layers = down + ([submodule] if submodule is not None else []) + up
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], dim=1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` stride-2 levels; an input of 2**num_downs pixels reaches 1x1.

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        num_downs: number of down-sampling levels (8 for 256x256 as published, 6 for 64x64).
        ngf: filters of the outermost level; inner levels double up to ``8 * ngf``.
        norm: ``batch`` | ``instance`` | ``group`` | ``none``.
        dropout: dropout rate of the three innermost decoder levels with ``8 * ngf`` filters
            (pix2pix's only source of noise; 0.5 as published).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5 (got {num_downs})")
        self.num_downs = num_downs
        block = _SkipBlock(ngf * 8, ngf * 8, None, norm, 0.0)
        for _ in range(num_downs - 5):
            block = _SkipBlock(ngf * 8, ngf * 8, block, norm, dropout)
        block = _SkipBlock(ngf * 4, ngf * 8, block, norm, 0.0)
        block = _SkipBlock(ngf * 2, ngf * 4, block, norm, 0.0)
        block = _SkipBlock(ngf, ngf * 2, block, norm, 0.0)
        self.model = _SkipBlock(
            ngf, ngf, block, norm, 0.0, in_channels, out_channels, outermost=True
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an image in [-1, 1] to an image in [-1, 1]."""
        size = 2**self.num_downs
        if x.shape[-1] % size or x.shape[-2] % size:
            raise ValueError(
                f"UnetGenerator with num_downs={self.num_downs} needs H and W divisible by "
                f"{size}, got {tuple(x.shape[-2:])}"
            )
        return self.model(x)
