"""SPADE / GauGAN victim (Park et al., CVPR 2019): semantic image synthesis.

SPADE residual generator, multi-scale PatchGAN discriminators with spectral norm, hinge
loss (averaged over scales), discriminator feature matching (weight 10, averaged over
scales), VGG-19 perceptual loss (weight 10), optional VAE image encoder (KLD weight 0.05),
TTUR optimisers (G 1e-4, D 4e-4, Adam β = (0, 0.9)).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from miabench.victims.multiscale_gan import MultiscaleGANVictim
from miabench.victims.nets.spade_nets import ConvEncoder, kld_loss


class SPADEVictim(MultiscaleGANVictim):
    """SPADE as a miabench victim.

    Args:
        encoder: the VAE image encoder (SPADE ``--use_vae``); the generator then starts
            from a code instead of the down-sampled label map. Training samples the code
            with the reparameterisation trick; queries use the mean code of the query's
            ground-truth photo (SPADE's test-time style encoding, without the noise, so
            signals are deterministic).
        lambda_kld: weight of the KL term (0.05).
        **kwargs: see :class:`~miabench.victims.multiscale_gan.MultiscaleGANVictim`;
            defaults are SPADE's (hinge averaged over scales, D loss × 1).
    """

    def __init__(
        self,
        *args: Any,
        encoder: ConvEncoder | None = None,
        lambda_kld: float = 0.05,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("gan_mode", "hinge")
        kwargs.setdefault("gan_reduction", "mean")
        kwargs.setdefault("d_loss_scale", 1.0)
        super().__init__(*args, **kwargs)
        if encoder is not None and not getattr(self.generator, "use_vae", False):
            raise ValueError("a SPADE encoder needs the generator built with use_vae: true")
        if encoder is None and getattr(self.generator, "use_vae", False):
            raise ValueError("generator.use_vae is true but the victim has no encoder")
        self.encoder = encoder
        self.lambda_kld = lambda_kld

    def generate(
        self, cond: torch.Tensor, batch: dict[str, Any], real: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.encoder is None:
            return self.generator(cond), {}
        if real is None:
            raise ValueError("the SPADE encoder needs the real photo")
        mu, logvar = self.encoder(real)
        if not self.training:
            return self.generator(cond, mu), {}
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.generator(cond, z), {"kld": self.lambda_kld * kld_loss(mu, logvar)}

    def generator_parameters(self) -> list[nn.Parameter]:
        params = list(self.generator.parameters())
        if self.encoder is not None:
            params += list(self.encoder.parameters())
        return params

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "vae_encoder": self.encoder is not None}
