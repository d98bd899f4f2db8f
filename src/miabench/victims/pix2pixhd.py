"""pix2pixHD victim (Wang et al., CVPR 2018): high-resolution conditional GAN.

Global generator (or global generator + local enhancer), multi-scale PatchGAN
discriminators, LSGAN loss, discriminator feature matching (weight 10 × 4/(n_layers+1) per
layer, averaged over scales), VGG-19 perceptual loss (weight 10), optional instance-boundary
channel (served by the data reader) and optional instance-wise feature encoder.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from miabench.victims.multiscale_gan import MultiscaleGANVictim
from miabench.victims.nets.pix2pixhd_nets import InstanceFeatureEncoder, LocalEnhancer


class Pix2PixHDVictim(MultiscaleGANVictim):
    """pix2pixHD as a miabench victim.

    Args:
        encoder: instance-wise feature encoder E (pix2pixHD ``--instance_feat`` /
            ``--label_feat``); its features, averaged per instance, are concatenated to
            the generator's input (not the discriminator's). Instances come from a batch's
            ``instance`` map when the reader serves one, else from the class label map
            (pix2pixHD's ``label_feat``). At query time the features are encoded from the
            query's ground-truth photo (pix2pixHD's ``use_encoded_image``), since the
            published alternative (k-means cluster centres of training features) is a
            sampling tool, not a reconstruction.
        n_epochs_fix_global: with a local enhancer, train only the enhancer for this many
            epochs first (pix2pixHD's ``niter_fix_global``).
        **kwargs: see :class:`~miabench.victims.multiscale_gan.MultiscaleGANVictim`;
            defaults are pix2pixHD's (LSGAN summed over scales, D loss × 0.5).
    """

    def __init__(
        self,
        *args: Any,
        encoder: InstanceFeatureEncoder | None = None,
        n_epochs_fix_global: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("gan_mode", "lsgan")
        kwargs.setdefault("gan_reduction", "sum")
        kwargs.setdefault("d_loss_scale", 0.5)
        super().__init__(*args, **kwargs)
        self.encoder = encoder
        self.n_epochs_fix_global = n_epochs_fix_global

    def instances(self, batch: dict[str, Any]) -> torch.Tensor:
        """Instance ids for the encoder: the reader's ``instance`` map or the class map."""
        if "instance" in batch:
            return batch["instance"]
        if self.label_nc == 0:
            raise ValueError(
                "the pix2pixHD feature encoder needs label maps (label_nc > 0) or an "
                "'instance' map in the batch"
            )
        return self.label_map(batch)

    def generate(
        self, cond: torch.Tensor, batch: dict[str, Any], real: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        g_input = cond
        if self.encoder is not None:
            if real is None:
                raise ValueError("the feature encoder needs the real photo")
            g_input = torch.cat([cond, self.encoder(real, self.instances(batch))], 1)
        return self.generator(g_input), {}

    def generator_parameters(self) -> list[nn.Parameter]:
        params = list(self.generator.parameters())
        if self.encoder is not None:
            params += list(self.encoder.parameters())
        return params

    def on_train_epoch_start(self) -> None:
        if self.n_epochs_fix_global and isinstance(self.generator, LocalEnhancer):
            # Frozen parameters get no gradient, so Adam leaves them (and their state) alone.
            train_global = self.current_epoch >= self.n_epochs_fix_global
            self.generator.global_generator.requires_grad_(train_global)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "feature_encoder": self.encoder is not None,
            "local_enhancer": isinstance(self.generator, LocalEnhancer),
        }
