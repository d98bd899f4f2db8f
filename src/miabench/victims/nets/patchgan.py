"""PatchGAN discriminator (pix2pix's 70x70 N-layer discriminator) and GAN losses.

Written here because no maintained library ships pix2pix's discriminator; pix2pixHD and
SPADE victims reuse it as the building block of their multi-scale discriminators.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from miabench.victims.nets.norm import conv_bias, init_weights, make_norm


class PatchGANDiscriminator(nn.Module):
    """Fully convolutional discriminator scoring overlapping patches.

    Args:
        in_channels: channels of the (condition, image) pair, e.g. 6 for RGB→RGB.
        ndf: filters of the first layer.
        n_layers: stride-2 layers (3 gives the published 70x70 receptive field).
        norm: ``batch`` | ``instance`` | ``group`` | ``none``.
        padding: padding of every 4x4 convolution (1 in pix2pix; pix2pixHD and SPADE use
            ``ceil(3 / 2) = 2``).
        spectral_norm: spectral normalisation of the middle convolutions (SPADE).
    """

    def __init__(
        self,
        in_channels: int = 6,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
        padding: int = 1,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, 2, padding),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        middle: list[nn.Conv2d] = []
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            conv = nn.Conv2d(ndf * prev, ndf * mult, 4, stride, padding, bias=bias)
            middle.append(conv)
            layers += [conv, make_norm(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, padding))
        self.model = nn.Sequential(*layers)
        init_weights(self)
        if spectral_norm:
            # SPADE's "spectralinstance": spectral norm on the middle convolutions only.
            for i, layer in enumerate(self.model):
                if any(layer is conv for conv in middle):
                    self.model[i] = nn.utils.parametrizations.spectral_norm(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return patch logits (B, 1, h, w)."""
        return self.model(x)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return every block's activation (after each LeakyReLU), then the patch logits.

        pix2pixHD and SPADE match these intermediate features between real and fake
        images (``n_layers + 1`` activations, then the logits last).
        """
        features = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                features.append(x)
        features.append(x)
        return features


def gan_loss(
    logits: torch.Tensor, real: bool, mode: str = "vanilla", for_generator: bool = False
) -> torch.Tensor:
    """GAN loss against an all-real or all-fake target.

    Args:
        logits: discriminator outputs.
        real: whether the target label is "real".
        mode: ``vanilla`` (BCE with logits, pix2pix), ``lsgan`` (least squares, pix2pixHD)
            or ``hinge`` (SPADE).
        for_generator: the generator's side of the loss. Only the hinge loss has a
            different generator form (``-mean(logits)``); the others ignore it.
    """
    if mode == "hinge":
        if for_generator:
            return -logits.mean()
        return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(logits, target)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    raise ValueError(f"gan_mode must be vanilla, lsgan or hinge, got {mode!r}")
