"""Shared training loop of the pix2pixHD and SPADE victims.

Both papers train a conditional generator against multi-scale PatchGAN discriminators with
a GAN loss, discriminator feature matching and a VGG-19 perceptual loss; they differ in the
generator, the GAN loss (LSGAN summed over scales vs hinge averaged), the feature-matching
weights, the optimiser settings and the optional encoder. This module holds what they share;
:mod:`miabench.victims.pix2pixhd` and :mod:`miabench.victims.spade` say how the generator
is called.

Inputs: with ``label_nc = 0`` the condition is an RGB image in [0, 1] (the aligned layout,
e.g. facades, maps), fed in [-1, 1]; with ``label_nc = K`` it is the one-hot label map of
the label→photo readers (K channels, plus an instance-boundary channel with ``boundary``),
fed as 0/1 values as both official implementations do.

Attack signals: ``output`` and ``target`` are photos in [0, 1]. ``input`` is what the
predictability error's backbone sees: for label maps, Shafran et al.'s code
(``run_MIA_pix2pixHD.py``) hands it the label file itself (Cityscapes ``*_labelIds.png``,
a grey image whose value is the label id, expanded to 3 channels by ``Grayscale(3)``), so the
victim renders the one-hot map back to that grey image: ``((argmax + label_id_shift) mod
label_nc) / 255``, one channel. ``label_id_shift`` undoes a reader's relabelling (1 for
SPADE's ADE20K order, where annotation 0 is the last channel).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from miabench.metrics.utility import image_utility
from miabench.utils.pretrained import loads_imagenet
from miabench.victims.base import OptimizerFactory, Signals
from miabench.victims.gan import GANVictim, to_unit
from miabench.victims.nets.multiscale import (
    MultiscaleDiscriminator,
    feature_matching_loss,
    multiscale_gan_loss,
)
from miabench.victims.nets.vgg_loss import VGG_WEIGHTS, VGGLoss


# the VGG loss's weights, whatever the config (vgg_weights: imagenet is the published loss)
@loads_imagenet(lambda: VGG_WEIGHTS)
class MultiscaleGANVictim(GANVictim):
    """Conditional GAN with multi-scale discriminators, feature matching and a VGG loss.

    Subclasses implement :meth:`generate`. Lightning's manual optimisation runs one
    discriminator step (on the detached fake) and one generator step per batch.

    Args:
        generator: the image generator (called by :meth:`generate`).
        discriminator: judges (condition, image) pairs concatenated on channels.
        optimizer_g: partial optimiser of the generator (and encoder).
        optimizer_d: partial optimiser of the discriminator.
        label_nc: label classes of a one-hot condition; 0 for an RGB image condition.
        gan_mode: ``lsgan`` (pix2pixHD) or ``hinge`` (SPADE).
        gan_reduction: ``sum`` over scales (pix2pixHD) or ``mean`` (SPADE).
        lambda_feat: weight of discriminator feature matching (10); 0 switches it off.
        feat_layer_weight: factor per matched layer (pix2pixHD ``4 / (n_layers + 1)``).
        lambda_vgg: weight of the VGG loss (10); 0 switches it off.
        vgg_weights: VGG-19 weights ``imagenet`` | ``<path>`` | ``none`` (off, with a warning).
        d_loss_scale: factor on the discriminator loss (pix2pixHD 0.5, SPADE 1).
        n_epochs_decay: the last ``n_epochs_decay`` epochs decay the learning rates linearly.
        label_id_shift: see the module docstring (rendering of the ``input`` signal).
    """

    provides = ("sample_id", "input", "target", "output")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: MultiscaleDiscriminator,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        label_nc: int = 0,
        gan_mode: str = "lsgan",
        gan_reduction: str = "sum",
        lambda_feat: float = 10.0,
        feat_layer_weight: float = 1.0,
        lambda_vgg: float = 10.0,
        vgg_weights: str = "imagenet",
        d_loss_scale: float = 1.0,
        n_epochs_decay: int = 0,
        label_id_shift: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator
        self._optimizer_g = optimizer_g
        self._optimizer_d = optimizer_d
        self.label_nc = label_nc
        self.gan_mode = gan_mode
        self.gan_reduction = gan_reduction
        self.lambda_feat = lambda_feat
        self.feat_layer_weight = feat_layer_weight
        self.lambda_vgg = lambda_vgg
        self.d_loss_scale = d_loss_scale
        self.n_epochs_decay = n_epochs_decay
        self.label_id_shift = label_id_shift
        # Built only when used: with lambda_vgg = 0 no weights are needed at all.
        self.vgg = VGGLoss(vgg_weights if lambda_vgg > 0 else "none")

    # -- conditioning -------------------------------------------------------------------

    def condition(self, batch: dict[str, Any]) -> torch.Tensor:
        """The generator's and discriminator's conditioning map for a batch."""
        x = batch["input"]
        if self.label_nc == 0:
            if x.shape[1] != 3:
                raise ValueError(
                    f"label_nc=0 expects RGB image inputs, got {x.shape[1]} channels; set the "
                    "victim's label_nc to the number of label classes for one-hot inputs"
                )
            return x * 2.0 - 1.0
        if x.shape[1] < self.label_nc:
            raise ValueError(
                f"victim label_nc={self.label_nc} but the data's one-hot input has "
                f"{x.shape[1]} channels (check data.num_classes / data.boundary)"
            )
        return x

    def label_map(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, H, W) class index of each pixel of a one-hot condition."""
        return batch["input"][:, : self.label_nc].argmax(1)

    def render_input(self, batch: dict[str, Any]) -> torch.Tensor:
        """The ``input`` signal: the RGB condition, or the grey label-id image of a label map."""
        if self.label_nc == 0:
            return batch["input"]
        ids = (self.label_map(batch) + self.label_id_shift) % self.label_nc
        return (ids.float() / 255.0).unsqueeze(1)

    # -- model --------------------------------------------------------------------------

    def generate(
        self, cond: torch.Tensor, batch: dict[str, Any], real: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Generate images in [-1, 1] and any extra generator losses (e.g. KLD).

        Args:
            cond: conditioning map from :meth:`condition`.
            batch: the batch (for instance maps).
            real: the real photo in [-1, 1] (encoders read it).
        """
        raise NotImplementedError

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Translate a batch's condition into photos in [0, 1]."""
        real = batch["target"] * 2.0 - 1.0
        fake, _ = self.generate(self.condition(batch), batch, real)
        return to_unit(fake)

    # -- training -----------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        cond = self.condition(batch)
        real = batch["target"] * 2.0 - 1.0
        fake, extra = self.generate(cond, batch, real)

        self.toggle_optimizer(opt_d)
        pred_fake = self.discriminator(torch.cat([cond, fake.detach()], 1))
        pred_real = self.discriminator(torch.cat([cond, real], 1))
        loss_d_fake = multiscale_gan_loss(
            pred_fake, False, self.gan_mode, False, self.gan_reduction
        )
        loss_d_real = multiscale_gan_loss(pred_real, True, self.gan_mode, False, self.gan_reduction)
        loss_d = self.d_loss_scale * (loss_d_fake + loss_d_real)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        pred_fake = self.discriminator(torch.cat([cond, fake], 1))
        if self.lambda_feat > 0:
            # Feature-matching targets from the same (just updated) discriminator.
            with torch.no_grad():
                pred_real = self.discriminator(torch.cat([cond, real], 1))
        losses = {
            "gan": multiscale_gan_loss(pred_fake, True, self.gan_mode, True, self.gan_reduction)
        }
        if self.lambda_feat > 0:
            losses["feat"] = self.lambda_feat * feature_matching_loss(
                pred_fake, pred_real, self.feat_layer_weight
            )
        if self.vgg.enabled:
            losses["vgg"] = self.lambda_vgg * self.vgg(fake, real)
        losses.update(extra)
        loss_g = torch.stack(list(losses.values())).sum()
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        logs = {f"train/loss_g_{k}": v.detach() for k, v in losses.items()}
        logs["train/loss_d"] = loss_d.detach()
        logs["train/l1"] = (fake.detach() - real).abs().mean() / 2.0  # in [0, 1] units
        self.log_dict(logs, prog_bar=True, on_step=False, on_epoch=True, batch_size=real.shape[0])

    # -- attack contract ----------------------------------------------------------------

    def signal_step(self, batch: dict[str, Any]) -> Signals:
        return {
            "sample_id": list(batch["sample_id"]),
            "input": self.render_input(batch),
            "target": batch["target"],
            "output": self(batch),
        }

    def utility(self, signals: Signals) -> dict[str, torch.Tensor]:
        return image_utility(signals["output"], signals["target"])

    def describe(self) -> dict[str, Any]:
        """VGG-loss status and how the ``input`` signal was rendered."""
        return {
            **self.vgg.describe(),
            "input_signal": "image" if self.label_nc == 0 else "label_id_grey",
        }
