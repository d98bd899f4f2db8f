"""Multi-scale PatchGAN discriminators with feature matching (pix2pixHD, SPADE).

pix2pixHD (Wang et al., CVPR 2018) and SPADE (Park et al., CVPR 2019) judge a (label, image)
pair with ``num_d`` PatchGAN discriminators of the same architecture, each seeing the pair
average-pooled once more than the previous one, and train the generator to match the
discriminators' intermediate features of real and generated pairs. Written here because no
maintained library ships them; each scale is the shared
:class:`~miabench.victims.nets.patchgan.PatchGANDiscriminator`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from miabench.victims.nets.patchgan import PatchGANDiscriminator, gan_loss

#: Per scale: the activations of every block, then the patch logits (last).
ScaleOutputs = list[list[torch.Tensor]]


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGAN discriminators at successively halved resolutions.

    Args:
        cond_channels: channels of the condition (label map, + boundary; or an RGB image).
        image_channels: channels of the judged image (3).
        num_d: number of scales (2 in pix2pixHD's 512p and SPADE; 3 for pix2pixHD's 1024p).
        ndf: filters of the first layer of each discriminator.
        n_layers: stride-2 layers of each discriminator (3 in both papers).
        norm: ``instance`` in both papers.
        padding: padding of the 4x4 convolutions (2 in both official implementations).
        spectral_norm: spectral norm on the middle convolutions (SPADE's ``spectralinstance``).
    """

    def __init__(
        self,
        cond_channels: int,
        image_channels: int = 3,
        num_d: int = 2,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        padding: int = 2,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if num_d < 1:
            raise ValueError(f"num_d must be >= 1, got {num_d}")
        in_channels = cond_channels + image_channels
        self.scales = nn.ModuleList(
            PatchGANDiscriminator(in_channels, ndf, n_layers, norm, padding, spectral_norm)
            for _ in range(num_d)
        )

    @staticmethod
    def downsample(x: torch.Tensor) -> torch.Tensor:
        """Halve the resolution as both papers do (3x3 average, padding not counted)."""
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> ScaleOutputs:
        """Return, finest scale first, each discriminator's features with its logits last."""
        outputs = []
        for i, disc in enumerate(self.scales):
            if i:
                x = self.downsample(x)
            outputs.append(disc.forward_features(x))
        return outputs


def multiscale_gan_loss(
    outputs: ScaleOutputs,
    real: bool,
    mode: str,
    for_generator: bool = False,
    reduction: str = "sum",
) -> torch.Tensor:
    """GAN loss on the logits of every scale.

    Args:
        outputs: what :class:`MultiscaleDiscriminator` returned.
        real: whether the target label is "real".
        mode: ``lsgan`` (pix2pixHD), ``hinge`` (SPADE) or ``vanilla``.
        for_generator: the generator's side (matters for the hinge loss only).
        reduction: ``sum`` over scales (pix2pixHD) or ``mean`` (SPADE).
    """
    losses = [gan_loss(feats[-1], real, mode, for_generator) for feats in outputs]
    total = torch.stack(losses).sum()
    if reduction == "mean":
        return total / len(losses)
    if reduction == "sum":
        return total
    raise ValueError(f"reduction must be sum or mean, got {reduction!r}")


def feature_matching_loss(
    fake: ScaleOutputs, real: ScaleOutputs, layer_weight: float = 1.0
) -> torch.Tensor:
    """Mean over scales of the summed L1 distances between intermediate features.

    The real features are detached: the loss trains the generator only. The logits (last
    entry of each scale) are not matched.

    Args:
        fake: discriminator outputs on the generated pair.
        real: discriminator outputs on the real pair.
        layer_weight: factor on every layer's term (pix2pixHD: ``4 / (n_layers + 1)``;
            SPADE: 1).
    """
    total = fake[0][0].new_zeros(())
    for fake_feats, real_feats in zip(fake, real, strict=True):
        for f, r in zip(fake_feats[:-1], real_feats[:-1], strict=True):
            total = total + F.l1_loss(f, r.detach())
    return total * layer_weight / len(fake)
