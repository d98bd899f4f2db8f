"""pix2pix victim: published architecture sizes, training steps, signals."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from miabench.victims.nets.patchgan import PatchGANDiscriminator, gan_loss
from miabench.victims.nets.unet import UnetGenerator
from miabench.victims.pix2pix import Pix2PixVictim


class _Pairs(Dataset):
    def __init__(self, n: int = 8, size: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = torch.rand(n, 3, size, size, generator=g)
        self.b = 1.0 - self.a

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int) -> dict:
        return {"sample_id": f"s{i}", "input": self.a[i], "target": self.b[i]}


def _victim(n_epochs_decay: int = 0) -> Pix2PixVictim:
    adam = lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    return Pix2PixVictim(
        UnetGenerator(num_downs=5, ngf=8),
        PatchGANDiscriminator(ndf=8, n_layers=2),
        adam,
        adam,
        n_epochs_decay=n_epochs_decay,
    )


def test_published_sizes() -> None:
    # pix2pix's unet_256 has 54.4M parameters and the 70x70 PatchGAN gives 30x30 logits.
    g = UnetGenerator()
    assert sum(p.numel() for p in g.parameters()) == 54_413_955
    d = PatchGANDiscriminator()
    assert d(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_generator_rejects_sizes_it_cannot_halve() -> None:
    with pytest.raises(ValueError, match="divisible by 64"):
        UnetGenerator(num_downs=6, ngf=4)(torch.zeros(1, 3, 48, 48))


def test_gan_loss_modes() -> None:
    logits = torch.zeros(2, 1, 3, 3)
    assert gan_loss(logits, True, "vanilla").item() == pytest.approx(0.6931, abs=1e-4)
    assert gan_loss(logits, True, "lsgan").item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="gan_mode"):
        gan_loss(logits, True, "hinge-typo")


def test_trains_and_yields_signals(tmp_path) -> None:
    model = _victim(n_epochs_decay=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, DataLoader(_Pairs(), batch_size=4))
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("generator.") for k in changed)
    assert any(k.startswith("discriminator.") for k in changed)
    assert torch.isfinite(trainer.callback_metrics["train/l1"])
    # Linear decay over the last 2 of 3 epochs: lr after 3 epochs is 2e-4 * (1 - 3/3) = 0.
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(0.0, abs=1e-12)

    model.train()
    signals = list(model.iter_signals(DataLoader(_Pairs(), batch_size=3)))
    assert model.training, "iter_signals restores the training mode it found"
    assert [s for batch in signals for s in batch["sample_id"]] == [f"s{i}" for i in range(8)]
    out = torch.cat([b["output"] for b in signals])
    assert out.shape == (8, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    util = model.utility(signals[0])
    assert set(util) >= {"l1", "psnr", "ssim"} and util["l1"].shape == (3,)
