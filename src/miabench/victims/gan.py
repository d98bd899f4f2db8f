"""What the conditional-GAN victims (pix2pix, pix2pixHD, SPADE) share.

All three train with Lightning's manual optimisation, one generator and one discriminator
optimiser, and the pix2pix-family learning-rate schedule: constant, then linear to zero over
the last ``n_epochs_decay`` epochs. Networks work in [-1, 1]; signals are in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from miabench.victims.base import OptimizerFactory, Victim


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] network output → [0, 1] image."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def linear_decay(total_epochs: int, n_epochs_decay: int) -> Callable[[int], float]:
    """Learning-rate factor: constant, then linear to zero over the last ``n_epochs_decay``
    epochs (factor after ``epoch + 1`` finished epochs), as pix2pix/pix2pixHD/SPADE do."""
    constant = max(total_epochs - n_epochs_decay, 0)

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - constant) / float(n_epochs_decay + 1)

    return factor


class GANVictim(Victim):
    """Manual-optimisation victim with a generator and a discriminator optimiser.

    Subclasses set ``generator``, ``discriminator``, ``_optimizer_g``, ``_optimizer_d``
    (Hydra partials) and ``n_epochs_decay`` in ``__init__``.
    """

    generator: nn.Module
    discriminator: nn.Module
    _optimizer_g: OptimizerFactory
    _optimizer_d: OptimizerFactory
    n_epochs_decay: int

    def generator_parameters(self) -> Iterable[nn.Parameter]:
        """Parameters the generator optimiser updates (subclasses add encoders)."""
        return self.generator.parameters()

    def configure_optimizers(self) -> Any:
        opt_g = self._optimizer_g(params=self.generator_parameters())
        opt_d = self._optimizer_d(params=self.discriminator.parameters())
        if not self.n_epochs_decay:
            return [opt_g, opt_d]
        factor = linear_decay(self.trainer.max_epochs, self.n_epochs_decay)
        schedulers = [torch.optim.lr_scheduler.LambdaLR(o, factor) for o in (opt_g, opt_d)]
        return [opt_g, opt_d], schedulers

    def on_train_epoch_end(self) -> None:
        # Manual optimisation: Lightning does not step schedulers for us.
        for scheduler in self.lr_schedulers() or []:
            scheduler.step()
