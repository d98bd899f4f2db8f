"""SPADE networks and victim: normalisation, generator sizes, VAE encoder, training steps."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from miabench.victims.nets.multiscale import MultiscaleDiscriminator
from miabench.victims.nets.spade_nets import SPADE, ConvEncoder, SPADEGenerator, kld_loss
from miabench.victims.spade import SPADEVictim
from tests.victims.test_pix2pixhd import K, LabelPhotos


def _ttur(lr: float):
    return lambda params: torch.optim.Adam(params, lr=lr, betas=(0.0, 0.9))


def tiny_victim(vae: bool = False) -> SPADEVictim:
    gen = SPADEGenerator(K, ngf=4, crop_size=32, use_vae=vae, z_dim=8, hidden=16)
    return SPADEVictim(
        gen,
        MultiscaleDiscriminator(K, num_d=2, ndf=8, n_layers=2, spectral_norm=True),
        _ttur(1e-4),
        _ttur(4e-4),
        label_nc=K,
        vgg_weights="none",
        encoder=ConvEncoder(ndf=4, z_dim=8, input_size=16) if vae else None,
    )


def test_spade_modulates_with_the_label_map() -> None:
    spade = SPADE(channels=2, label_channels=3, param_free_norm="instance", hidden=4)
    torch.nn.init.zeros_(spade.gamma.weight)
    torch.nn.init.zeros_(spade.gamma.bias)
    torch.nn.init.zeros_(spade.beta.weight)
    torch.nn.init.zeros_(spade.beta.bias)
    x = torch.randn(1, 2, 8, 8)
    seg = torch.zeros(1, 3, 4, 4)
    # zero gamma and beta: just the parameter-free normalisation
    assert torch.allclose(spade(x, seg), torch.nn.functional.instance_norm(x), atol=1e-5)
    torch.nn.init.ones_(spade.beta.bias)
    assert torch.allclose(spade(x, seg), torch.nn.functional.instance_norm(x) + 1, atol=1e-5)


@pytest.mark.parametrize("mode,steps", [("normal", 5), ("more", 6), ("most", 7)])
def test_generator_start_grid_and_output_size(mode: str, steps: int) -> None:
    g = SPADEGenerator(
        3, ngf=2, num_upsampling_layers=mode, crop_size=256, aspect_ratio=2.0, hidden=4
    )
    assert (g.sw, g.sh) == (256 // 2**steps, 256 // 2**steps // 2)
    out = g(torch.rand(1, 3, 128, 256))
    assert out.shape == (1, 3, 128, 256) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="built for"):
        g(torch.rand(1, 3, 256, 256))


def test_generator_rejects_too_small_crops() -> None:
    with pytest.raises(ValueError, match="too small"):
        SPADEGenerator(3, crop_size=16, num_upsampling_layers="normal")


def test_encoder_and_kld() -> None:
    enc = ConvEncoder(ndf=4, z_dim=5, input_size=16)
    mu, logvar = enc(torch.rand(2, 3, 40, 40) * 2 - 1)  # resized to 16x16 first
    assert mu.shape == logvar.shape == (2, 5)
    assert kld_loss(torch.zeros(2, 5), torch.zeros(2, 5)).item() == 0.0
    assert kld_loss(torch.ones(2, 5), torch.zeros(2, 5)).item() == pytest.approx(0.5 * 10)
    with pytest.raises(ValueError, match="input_size"):
        ConvEncoder(input_size=24)


def test_encoder_and_generator_must_agree() -> None:
    gen = SPADEGenerator(K, ngf=4, crop_size=32, use_vae=True, z_dim=8, hidden=16)
    disc = MultiscaleDiscriminator(K, num_d=1, ndf=4, n_layers=2)
    with pytest.raises(ValueError, match="no encoder"):
        SPADEVictim(gen, disc, _ttur(1e-4), _ttur(4e-4), label_nc=K, vgg_weights="none")


@pytest.mark.parametrize("vae", [False, True])
def test_trains_and_yields_signals(tmp_path, vae: bool) -> None:
    model = tiny_victim(vae)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, DataLoader(LabelPhotos(), batch_size=4))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("generator.") for k in changed)
    assert any(k.startswith("discriminator.") for k in changed)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss_d"]) and torch.isfinite(metrics["train/loss_g_gan"])
    assert ("train/loss_g_kld" in metrics) is vae
    # TTUR: the discriminator's learning rate stays 4x the generator's
    lrs = [opt.param_groups[0]["lr"] for opt in trainer.optimizers]
    assert lrs == pytest.approx([1e-4, 4e-4])

    loader = DataLoader(LabelPhotos(), batch_size=8)
    first = next(model.iter_signals(loader))
    again = next(model.iter_signals(loader))
    # queries are deterministic (the VAE uses the mean code at query time)
    assert torch.equal(first["output"], again["output"])
    assert first["output"].shape == (8, 3, 32, 32) and first["input"].shape == (8, 1, 32, 32)
    assert model.describe()["vae_encoder"] is vae


def test_label_id_shift_restores_the_annotation_values() -> None:
    # SPADE's ADE20K order: channel c is annotation c + 1, the last channel annotation 0.
    model = SPADEVictim(
        SPADEGenerator(3, ngf=2, crop_size=32, hidden=4),
        MultiscaleDiscriminator(3, num_d=1, ndf=4, n_layers=1),
        _ttur(1e-4),
        _ttur(4e-4),
        label_nc=3,
        vgg_weights="none",
        label_id_shift=1,
    )
    channels = torch.tensor([[[0, 1, 2]]])
    onehot = torch.nn.functional.one_hot(channels, 3).permute(0, 3, 1, 2).float()
    grey = model.render_input({"input": onehot})
    assert torch.equal(grey[0, 0, 0] * 255, torch.tensor([1.0, 2.0, 0.0]))
