"""Tiny victims and a fit helper that applies a defense the way pipeline/train.py does."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from miabench.data.aligned import AlignedDataset
from miabench.data.datamodule import MembershipDataModule
from miabench.defenses.base import Defense
from miabench.victims.base import Signals, Victim
from miabench.victims.nets.patchgan import PatchGANDiscriminator
from miabench.victims.nets.unet import UnetGenerator
from miabench.victims.pix2pix import Pix2PixVictim


class TinySegVictim(Victim):
    """Automatic-optimisation victim (a 2-class per-pixel classifier with BatchNorm), the
    shape of the segmentation victims: ``self.label_smoothing`` read by its loss, an
    ``optimizer`` partial, ``val/loss`` logged."""

    provides = ("sample_id", "input", "target", "output")

    def __init__(self, lr: float = 0.1, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 2, 1),
        )
        self.label_smoothing = 0.0
        self.lr = lr
        self.weight_decay = weight_decay
        self.losses: list[float] = []

    @staticmethod
    def labels(batch: dict[str, Any]) -> torch.Tensor:
        return (batch["target"][:, 0] > 0.5).long()

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        return F.cross_entropy(
            self.net(batch["input"]), self.labels(batch), label_smoothing=self.label_smoothing
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch), batch_size=len(batch["sample_id"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def signal_step(self, batch: dict[str, Any]) -> Signals:
        probs = self.net(batch["input"]).softmax(1)
        return {**batch, "output": probs[:, 1:].expand(-1, 3, -1, -1)}


def tiny_pix2pix(num_downs: int = 5, dropout: float = 0.0) -> Pix2PixVictim:
    return Pix2PixVictim(
        generator=UnetGenerator(3, 3, num_downs=num_downs, ngf=4, dropout=dropout),
        discriminator=PatchGANDiscriminator(6, ndf=4, n_layers=2),
        optimizer_g=partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)),
        optimizer_d=partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)),
    )


def datamodule(root: Path, n_validation: int = 0, batch_size: int = 4) -> MembershipDataModule:
    dm = MembershipDataModule(
        dataset=partial(AlignedDataset, root=root, load_size=32, crop_size=32),
        n_members=8,
        n_nonmembers=8,
        n_validation=n_validation,
        batch_size=batch_size,
        seed=0,
    )
    dm.setup()
    return dm


def fit(
    defense: Defense,
    module: pl.LightningModule,
    dm: Any,
    max_epochs: int = 1,
    callbacks: list[pl.Callback] | None = None,
) -> pl.Trainer:
    """Apply ``defense`` as pipeline/train.py does, then fit."""
    defense.prepare_module(module)
    fit_dm = defense.prepare_datamodule(dm)
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=defense.callbacks() + (callbacks or []),
    )
    trainer.fit(module, datamodule=fit_dm)
    return trainer


@pytest.fixture
def dm(aligned_root: Path) -> MembershipDataModule:
    return datamodule(aligned_root)
