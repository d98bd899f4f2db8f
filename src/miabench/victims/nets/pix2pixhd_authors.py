"""pix2pixHD's generators in the structure of NVIDIA/pix2pixHD's ``networks.py``.

:mod:`miabench.victims.nets.pix2pixhd_nets` names its layers for reading (``features``,
``head``, ``front``/``back``); the authors keep every layer of a generator in one flat
``model`` sequence (``model.<i>``, residual blocks ``model.<i>.conv_block.<j>``) and a local
enhancer's two halves in ``model<n>_1`` / ``model<n>_2``. The same layers are built here
under the authors' names, so a released ``latest_net_G.pth`` loads key for key
(``victim.module.generator._target_`` selects these classes; see conf/victim/pix2pixhd.yaml).
The feature encoder E already has the authors' structure (``model.<i>``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from miabench.victims.nets.norm import init_weights, make_norm
from miabench.victims.nets.resnet_gen import ResnetBlock

# The authors' convolutions all have a bias, whatever the norm (pix2pixhd_nets drops it
# before an affine norm), so their own layer builders are used here.


def _stem(cin: int, cout: int, norm: str) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), make_norm(norm, cout), nn.ReLU(True)]


def _down(cin: int, cout: int, norm: str) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 2, 1), make_norm(norm, cout), nn.ReLU(True)]


def _up(cin: int, cout: int, norm: str) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1),
        make_norm(norm, cout),
        nn.ReLU(True),
    ]


def _head(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), nn.Tanh()]


def _global_layers(
    in_channels: int, out_channels: int, ngf: int, n_downsampling: int, n_blocks: int, norm: str
) -> list[nn.Module]:
    layers = _stem(in_channels, ngf, norm)
    for i in range(n_downsampling):
        layers += _down(ngf * 2**i, ngf * 2 ** (i + 1), norm)
    layers += [ResnetBlock(ngf * 2**n_downsampling, norm, bias=True) for _ in range(n_blocks)]
    for i in range(n_downsampling, 0, -1):
        layers += _up(ngf * 2**i, ngf * 2 ** (i - 1), norm)
    return layers + _head(ngf, out_channels)


def _check_size(x: torch.Tensor, size: int) -> None:
    if x.shape[-1] % size or x.shape[-2] % size:
        raise ValueError(
            f"pix2pixHD generator needs H and W divisible by {size}, got {tuple(x.shape[-2:])}"
        )


class GlobalGenerator(nn.Module):
    """pix2pixHD's global generator G1 (``--netG global``), keys ``model.<i>``.

    Args: as :class:`miabench.victims.nets.pix2pixhd_nets.GlobalGenerator`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 3,
        ngf: int = 64,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        self.n_downsampling = n_downsampling
        self.model = nn.Sequential(
            *_global_layers(in_channels, out_channels, ngf, n_downsampling, n_blocks, norm)
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a conditioning map to an image in [-1, 1]."""
        _check_size(x, 2**self.n_downsampling)
        return self.model(x)


class LocalEnhancer(nn.Module):
    """pix2pixHD's coarse-to-fine generator (``--netG local``): G1 without its last three
    layers in ``model``, and per enhancer ``model<n>_1`` (front end) and ``model<n>_2``
    (residual blocks, up-sampling, and on the last one the output layer).

    Args: as :class:`miabench.victims.nets.pix2pixhd_nets.LocalEnhancer` (released 1024p
    Cityscapes model: ``ngf 32``, one enhancer, 3 local blocks).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 3,
        ngf: int = 32,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        n_enhancers: int = 1,
        n_blocks_local: int = 3,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        self.n_enhancers = n_enhancers
        self.n_downsampling = n_downsampling
        g1 = _global_layers(
            in_channels,
            out_channels,
            ngf * 2**n_enhancers,
            n_downsampling,
            n_blocks,
            norm,
        )
        self.model = nn.Sequential(*g1[:-3])  # G2 reads G1's last feature map
        for n in range(1, n_enhancers + 1):
            width = ngf * 2 ** (n_enhancers - n)
            front = [*_stem(in_channels, width, norm), *_down(width, width * 2, norm)]
            back: list[nn.Module] = [
                ResnetBlock(width * 2, norm, bias=True) for _ in range(n_blocks_local)
            ]
            back += _up(width * 2, width, norm)
            if n == n_enhancers:
                back += _head(ngf, out_channels)
            setattr(self, f"model{n}_1", nn.Sequential(*front))
            setattr(self, f"model{n}_2", nn.Sequential(*back))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a conditioning map to an image in [-1, 1] at the input's resolution."""
        _check_size(x, 2 ** (self.n_downsampling + self.n_enhancers))
        pyramid = [x]
        for _ in range(self.n_enhancers):
            # the authors' AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
            pyramid.append(
                F.avg_pool2d(pyramid[-1], 3, stride=2, padding=1, count_include_pad=False)
            )
        out = self.model(pyramid[-1])
        for n in range(1, self.n_enhancers + 1):
            front = getattr(self, f"model{n}_1")
            back = getattr(self, f"model{n}_2")
            out = back(front(pyramid[self.n_enhancers - n]) + out)
        return out
