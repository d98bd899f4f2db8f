"""Time a training step of pix2pix with DP-SGD (Opacus, inside Lightning) against without.

The victim is the one of ``experiment=defenses/pix2pix_edges2fashion`` (32x32 images,
U-Net with 5 levels and ngf 32, PatchGAN with ndf 32 and 2 layers), batch 4, on random
images held in memory, so only the training step is timed (Lightning's loop included). Three
runs, each ``--steps`` timed steps after ``--warmup`` untimed ones:

- ``plain``: the undefended victim (BatchNorm);
- ``plain_groupnorm``: the same with GroupNorm, the architecture DP-SGD trains (so the
  ratio to it is the cost of per-sample gradients, clipping and noise alone);
- ``dpsgd``: the ``dpsgd`` defense (Poisson batches of expected size 4, σ = 1, C = 1).

Usage (single thread, as every run here):
    OMP_NUM_THREADS=1 python experiments/bench/dpsgd.py --steps 60
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from miabench.defenses.base import Defense, NoDefense
from miabench.defenses.dpsgd import DPSGD
from miabench.victims.nets.patchgan import PatchGANDiscriminator
from miabench.victims.nets.unet import UnetGenerator
from miabench.victims.pix2pix import Pix2PixVictim


class Memory(pl.LightningDataModule):
    """Random image pairs held in memory (no decoding in the timed loop)."""

    def __init__(self, n: int, size: int, batch_size: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.items = [
            {
                "sample_id": str(i),
                "input": torch.rand(3, size, size, generator=g),
                "target": torch.rand(3, size, size, generator=g),
            }
            for i in range(n)
        ]
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.items, batch_size=self.batch_size, shuffle=True)


class StepTimer(pl.Callback):
    """Wall time of each training step (batch start to batch end)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.times: list[float] = []
        self.sizes: list[int] = []
        self._start = 0.0
        self.seen = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, idx: int
    ) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: Any, out: Any, batch: Any, idx: int
    ) -> None:
        self.seen += 1
        if self.seen > self.warmup:
            self.times.append(time.perf_counter() - self._start)
            self.sizes.append(len(batch["sample_id"]))


def victim(norm: str) -> Pix2PixVictim:
    return Pix2PixVictim(
        generator=UnetGenerator(3, 3, num_downs=5, ngf=32, norm=norm, dropout=0.0),
        discriminator=PatchGANDiscriminator(6, ndf=32, n_layers=2, norm=norm),
        optimizer_g=partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)),
        optimizer_d=partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)),
    )


def time_steps(defense: Defense, norm: str, steps: int, warmup: int, batch: int) -> StepTimer:
    torch.manual_seed(0)
    module = victim(norm)
    data = Memory(n=64, size=32, batch_size=batch)
    defense.prepare_module(module)
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        max_steps=2 * (steps + warmup),  # manual optimisation: two optimizer steps per batch
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[*defense.callbacks(), timer],
    )
    trainer.fit(module, datamodule=defense.prepare_datamodule(data))
    return timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}, batch {args.batch}, 32x32")
    runs = {
        "plain": (NoDefense(), "batch"),
        "plain_groupnorm": (NoDefense(), "group"),
        "dpsgd": (DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5), "batch"),
    }
    medians = {}
    for name, (defense, norm) in runs.items():
        timer = time_steps(defense, norm, args.steps, args.warmup, args.batch)
        medians[name] = statistics.median(timer.times)
        per_sample = sum(timer.times) / max(sum(timer.sizes), 1)
        print(
            f"{name:>16}: median step {medians[name] * 1e3:7.1f} ms over {len(timer.times)} steps"
            f" (mean batch {statistics.mean(timer.sizes):.2f}, {per_sample * 1e3:.1f} ms/sample)"
        )
    print(f"ratio dpsgd / plain           = {medians['dpsgd'] / medians['plain']:.2f}x")
    print(f"ratio dpsgd / plain_groupnorm = {medians['dpsgd'] / medians['plain_groupnorm']:.2f}x")


if __name__ == "__main__":
    main()
