"""pix2pix victim: conditional GAN image translation (Isola et al., CVPR 2017)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from miabench.metrics.utility import image_utility
from miabench.victims.base import OptimizerFactory, Signals
from miabench.victims.gan import GANVictim, to_unit
from miabench.victims.nets.patchgan import gan_loss


class Pix2PixVictim(GANVictim):
    """U-Net generator + PatchGAN discriminator trained with L1 + GAN loss.

    Lightning's manual optimisation runs one discriminator and one generator step per batch,
    as the published training loop does (D first, on the detached fake).

    Args:
        generator: maps an input in [-1, 1] to an output in [-1, 1].
        discriminator: scores (input, output) pairs concatenated on channels.
        optimizer_g: partial optimiser for the generator (Adam 2e-4, β1=0.5 as published).
        optimizer_d: partial optimiser for the discriminator.
        lambda_l1: weight of the L1 term (100 as published).
        gan_mode: ``vanilla`` or ``lsgan``.
        n_epochs_decay: the last ``n_epochs_decay`` epochs decay the learning rate linearly
            to zero (pix2pix's schedule: 100 constant + 100 decaying); 0 keeps it constant.
    """

    provides = ("sample_id", "input", "target", "output")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        lambda_l1: float = 100.0,
        gan_mode: str = "vanilla",
        n_epochs_decay: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self._optimizer_g = optimizer_g
        self._optimizer_d = optimizer_d
        self.lambda_l1 = lambda_l1
        self.gan_mode = gan_mode
        self.n_epochs_decay = n_epochs_decay
        self.save_hyperparameters(
            ignore=["generator", "discriminator", "optimizer_g", "optimizer_d"], logger=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate a batch of images in [0, 1]; returns images in [0, 1]."""
        return to_unit(self.generator(x * 2.0 - 1.0))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        real_a = batch["input"] * 2.0 - 1.0
        real_b = batch["target"] * 2.0 - 1.0
        fake_b = self.generator(real_a)

        self.toggle_optimizer(opt_d)
        pred_fake = self.discriminator(torch.cat([real_a, fake_b.detach()], 1))
        pred_real = self.discriminator(torch.cat([real_a, real_b], 1))
        loss_d = 0.5 * (
            gan_loss(pred_fake, False, self.gan_mode) + gan_loss(pred_real, True, self.gan_mode)
        )
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        pred_fake = self.discriminator(torch.cat([real_a, fake_b], 1))
        loss_gan = gan_loss(pred_fake, True, self.gan_mode)
        loss_l1 = F.l1_loss(fake_b, real_b)
        loss_g = loss_gan + self.lambda_l1 * loss_l1
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        bs = real_a.shape[0]
        self.log_dict(
            {"train/loss_d": loss_d, "train/loss_g_gan": loss_gan, "train/l1": loss_l1},
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=bs,
        )

    def utility(self, signals: Signals) -> dict[str, torch.Tensor]:
        return image_utility(signals["output"], signals["target"])
