"""pix2pix/CycleGAN's ResNet generator (``--netG resnet_9blocks`` / ``resnet_6blocks``), in
the structure of junyanz/pytorch-CycleGAN-and-pix2pix's ``networks.py``.

Written here because no maintained library ships it, and built module for module as its
authors build it, so that their released ``<epoch>_net_G.pth`` files load key for key:
``model.<i>`` for the flat stem / down-sampling / residual / up-sampling / head sequence and
``model.<i>.conv_block.<j>`` inside a residual block (where the optional dropout shifts the
second convolution from index 5 to 6).
"""

from __future__ import annotations

import torch
from torch import nn

from miabench.victims.nets.norm import conv_bias, init_weights, make_norm


class ResnetBlock(nn.Module):
    """The authors' residual block: reflect-pad, 3x3 conv, norm, ReLU, [dropout], reflect-pad,
    3x3 conv, norm, plus the identity (``conv_block`` as in their key names).

    Args:
        channels: feature channels.
        norm: ``batch`` | ``instance`` | ``none``.
        dropout: dropout rate between the two convolutions (0: no dropout layer).
        bias: conv bias; None follows pix2pix (bias only without an affine norm).
            pix2pixHD always has one (``True``).
    """

    def __init__(
        self, channels: int, norm: str, dropout: float = 0.0, bias: bool | None = None
    ) -> None:
        super().__init__()
        bias = conv_bias(norm) if bias is None else bias
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
        ]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """pix2pix/CycleGAN's ResNet generator: 7x7 stem, 2 stride-2 convs, ``n_blocks`` residual
    blocks, 2 transposed convs, 7x7 conv + tanh (reflection padding throughout).

    Args:
        in_channels: input image channels.
        out_channels: output image channels.
        ngf: filters of the first layer (64 as published).
        n_blocks: residual blocks (9: ``resnet_9blocks``, 6: ``resnet_6blocks``).
        norm: ``batch`` (pix2pix's default) or ``instance`` (CycleGAN's).
        dropout: dropout inside every residual block (pix2pix trains with 0.5 unless
            ``--no_dropout``; it decides the released keys' indices, see the module doc).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=bias),
            make_norm(norm, ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                make_norm(norm, ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for i in range(2, 0, -1):
            mult = 2**i
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, 2, padding=1, output_padding=1, bias=bias
                ),
                make_norm(norm, ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map an image in [-1, 1] to an image in [-1, 1] (H and W divisible by 4)."""
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"ResnetGenerator needs H and W divisible by 4, got {x.shape[-2:]}")
        return self.model(x)
