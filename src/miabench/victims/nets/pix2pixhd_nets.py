"""pix2pixHD networks (Wang et al., CVPR 2018): global generator, local enhancer, encoder.

Written from the paper and the structure of NVIDIA/pix2pixHD's ``networks.py``, because no
maintained library ships them:

* :class:`GlobalGenerator` (G1): 7x7 conv, ``n_downsampling`` stride-2 convs, residual
  blocks, as many transposed convs, 7x7 conv + tanh; reflection padding, instance norm.
* :class:`LocalEnhancer` (G2): a G1 trained at half resolution without its output layer,
  whose features are added to those of a front-end at full resolution, then residual
  blocks and an up-sampling back-end (2x the resolution per enhancer).
* :class:`InstanceFeatureEncoder` (E): an encoder-decoder whose output is averaged inside
  every instance, giving the generator low-dimensional per-instance style features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from miabench.victims.nets.norm import conv_bias, init_weights, make_norm


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 conv + norm layers with an identity shortcut."""

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        bias = conv_bias(norm)
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _down(cin: int, cout: int, norm: str) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, 2, 1, bias=conv_bias(norm)),
        make_norm(norm, cout),
        nn.ReLU(True),
    ]


def _up(cin: int, cout: int, norm: str) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1, bias=conv_bias(norm)),
        make_norm(norm, cout),
        nn.ReLU(True),
    ]


def _stem(cin: int, cout: int, norm: str) -> list[nn.Module]:
    return [
        nn.ReflectionPad2d(3),
        nn.Conv2d(cin, cout, 7, bias=conv_bias(norm)),
        make_norm(norm, cout),
        nn.ReLU(True),
    ]


def _head(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7), nn.Tanh()]


class GlobalGenerator(nn.Module):
    """pix2pixHD's global generator G1.

    Args:
        in_channels: label channels (+1 instance boundary, + encoder features), or 3 for
            an RGB input image.
        out_channels: output image channels.
        ngf: filters of the first layer (64 as published).
        n_downsampling: stride-2 levels (4 as published: ``netG global`` 512p).
        n_blocks: residual blocks at the bottleneck (9 as published).
        norm: ``instance`` as published.
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
        layers = _stem(in_channels, ngf, norm)
        for i in range(n_downsampling):
            layers += _down(ngf * 2**i, ngf * 2 ** (i + 1), norm)
        width = ngf * 2**n_downsampling
        layers += [ResnetBlock(width, norm) for _ in range(n_blocks)]
        for i in range(n_downsampling, 0, -1):
            layers += _up(ngf * 2**i, ngf * 2 ** (i - 1), norm)
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(*_head(ngf, out_channels))
        init_weights(self)

    def check_size(self, x: torch.Tensor, factor: int = 1) -> None:
        """Raise when H or W cannot be halved ``n_downsampling`` (× enhancer) times."""
        size = 2**self.n_downsampling * factor
        if x.shape[-1] % size or x.shape[-2] % size:
            raise ValueError(
                f"pix2pixHD generator needs H and W divisible by {size}, got {tuple(x.shape[-2:])}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a conditioning map to an image in [-1, 1]."""
        self.check_size(x)
        return self.head(self.features(x))


class LocalEnhancer(nn.Module):
    """pix2pixHD's coarse-to-fine generator G = {G1, G2}: a global generator at
    ``1 / 2**n_enhancers`` resolution wrapped by ``n_enhancers`` local enhancers.

    Args:
        in_channels: conditioning channels.
        out_channels: output channels.
        ngf: filters of the outermost enhancer (32 as published for 1024p); the global
            generator gets ``ngf * 2**n_enhancers``.
        n_downsampling: stride-2 levels of G1 (4).
        n_blocks: residual blocks of G1 (9).
        n_enhancers: number of local enhancers (1 for 2x, as published).
        n_blocks_local: residual blocks per enhancer (3).
        norm: ``instance``.
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
        self.global_generator = GlobalGenerator(
            in_channels,
            out_channels,
            ngf * 2**n_enhancers,
            n_downsampling,
            n_blocks,
            norm,
        )
        # G1's output layer is not used: G2 takes G1's last feature map instead.
        self.global_generator.head = nn.Identity()
        self.front = nn.ModuleList()
        self.back = nn.ModuleList()
        for n in range(1, n_enhancers + 1):
            width = ngf * 2 ** (n_enhancers - n)
            self.front.append(
                nn.Sequential(*_stem(in_channels, width, norm), *_down(width, width * 2, norm))
            )
            back = [ResnetBlock(width * 2, norm) for _ in range(n_blocks_local)]
            back += _up(width * 2, width, norm)
            if n == n_enhancers:
                back += _head(ngf, out_channels)
            self.back.append(nn.Sequential(*back))
        init_weights(self)

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a conditioning map to an image in [-1, 1] at the input's resolution."""
        self.global_generator.check_size(x, 2**self.n_enhancers)
        pyramid = [x]
        for _ in range(self.n_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.global_generator.features(pyramid[-1])
        for n in range(self.n_enhancers):
            out = self.back[n](self.front[n](pyramid[self.n_enhancers - 1 - n]) + out)
        return out


def instance_mean(features: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
    """Replace every pixel's features by their mean over its instance (per image).

    Args:
        features: (B, C, H, W).
        instances: (B, H, W) or (B, 1, H, W) integer instance ids.
    """
    if instances.ndim == 4:
        instances = instances[:, 0]
    b, c = features.shape[:2]
    ids = instances.long().flatten(1)
    # Relabel per image to 0..n-1 so one scatter handles every image of the batch.
    _, inverse = torch.unique(ids, return_inverse=True)
    n = int(inverse.max()) + 1
    flat = features.flatten(2)  # (B, C, P)
    index = inverse.unsqueeze(1).expand(b, c, -1)
    sums = flat.new_zeros(b, c, n).scatter_add_(2, index, flat)
    counts = flat.new_zeros(b, 1, n).scatter_add_(
        2, inverse.unsqueeze(1), torch.ones_like(flat[:, :1])
    )
    means = sums / counts.clamp_min(1.0)
    return means.gather(2, index).view_as(features)


class InstanceFeatureEncoder(nn.Module):
    """pix2pixHD's encoder E: image → ``feat_channels`` maps, averaged within each instance.

    Args:
        in_channels: image channels.
        feat_channels: per-instance feature dimension (3 as published).
        nef: filters of the first layer (16).
        n_downsampling: stride-2 levels (4).
        norm: ``instance``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        feat_channels: int = 3,
        nef: int = 16,
        n_downsampling: int = 4,
        norm: str = "instance",
    ) -> None:
        super().__init__()
        self.feat_channels = feat_channels
        layers = _stem(in_channels, nef, norm)
        for i in range(n_downsampling):
            layers += _down(nef * 2**i, nef * 2 ** (i + 1), norm)
        for i in range(n_downsampling, 0, -1):
            layers += _up(nef * 2**i, nef * 2 ** (i - 1), norm)
        layers += _head(nef, feat_channels)
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, image: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
        """(B, feat_channels, H, W) features, constant inside every instance."""
        return instance_mean(self.model(image), instances)


def instance_boundaries(instances: torch.Tensor) -> torch.Tensor:
    """pix2pixHD's boundary map: 1 where a pixel's 4-neighbour has another instance id.

    Args:
        instances: (B, H, W) or (B, 1, H, W) instance ids.

    Returns:
        (B, 1, H, W) float map in {0, 1}.
    """
    t = instances if instances.ndim == 4 else instances.unsqueeze(1)
    edge = torch.zeros_like(t, dtype=torch.bool)
    dx = t[..., :, 1:] != t[..., :, :-1]
    dy = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.float()
