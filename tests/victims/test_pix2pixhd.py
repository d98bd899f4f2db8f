"""pix2pixHD networks, shared multi-scale discriminator and losses, and the victim's steps."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from miabench.data.segmentation_base import instance_edges
from miabench.victims.nets.multiscale import (
    MultiscaleDiscriminator,
    feature_matching_loss,
    multiscale_gan_loss,
)
from miabench.victims.nets.patchgan import PatchGANDiscriminator, gan_loss
from miabench.victims.nets.pix2pixhd_nets import (
    GlobalGenerator,
    InstanceFeatureEncoder,
    LocalEnhancer,
    instance_boundaries,
    instance_mean,
)
from miabench.victims.nets.vgg_loss import VGGLoss
from miabench.victims.pix2pixhd import Pix2PixHDVictim

K = 4  # label classes of the synthetic label maps


class LabelPhotos(Dataset):
    """Blocky one-hot label maps and photos: a class colour per block plus per-image noise."""

    def __init__(self, n: int = 8, size: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, K, (n, size // 8, size // 8), generator=g)
        self.labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)
        colours = torch.rand(K, 3, generator=g)
        base = colours[self.labels].permute(0, 3, 1, 2)
        self.photos = (base + 0.2 * torch.rand(base.shape, generator=g)).clamp(0, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        onehot = F.one_hot(self.labels[i], K).permute(2, 0, 1).float()
        return {"sample_id": f"s{i}", "input": onehot, "target": self.photos[i]}


def _adam(params):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def tiny_victim(encoder: bool = False, local: bool = False) -> Pix2PixHDVictim:
    feat = 3 if encoder else 0
    if local:
        gen = LocalEnhancer(K + feat, ngf=4, n_downsampling=2, n_blocks=1, n_blocks_local=1)
    else:
        gen = GlobalGenerator(K + feat, ngf=8, n_downsampling=2, n_blocks=2)
    return Pix2PixHDVictim(
        gen,
        MultiscaleDiscriminator(K, num_d=2, ndf=8, n_layers=2),
        _adam,
        _adam,
        label_nc=K,
        vgg_weights="none",
        n_epochs_decay=1,
        encoder=InstanceFeatureEncoder(nef=4, n_downsampling=2) if encoder else None,
        n_epochs_fix_global=1 if local else 0,
    )


def test_global_generator_keeps_size_and_rejects_odd_sizes() -> None:
    g = GlobalGenerator(5, ngf=4, n_downsampling=3, n_blocks=1)
    out = g(torch.zeros(2, 5, 16, 24))
    assert out.shape == (2, 3, 16, 24) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="divisible by 8"):
        g(torch.zeros(1, 5, 12, 16))


def test_local_enhancer_runs_the_global_generator_at_half_resolution() -> None:
    g = LocalEnhancer(3, ngf=4, n_downsampling=2, n_blocks=1, n_blocks_local=1)
    seen = []
    g.global_generator.features.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    out = g(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 3, 32, 32)
    assert seen == [torch.Size([1, 3, 16, 16])]
    # G1 gets twice the enhancer's width, as published (ngf_global = ngf * 2**n_enhancers).
    assert g.global_generator.features[1].out_channels == 8
    with pytest.raises(ValueError, match="divisible by 8"):
        g(torch.rand(1, 3, 20, 20))


def test_instance_mean_matches_a_per_instance_loop() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 6, 5, generator=g)
    inst = torch.randint(0, 4, (2, 6, 5), generator=g)
    inst[1] += 10  # ids need not be shared between images
    out = instance_mean(feats, inst)
    for b in range(2):
        for i in inst[b].unique():
            mask = inst[b] == i
            expected = feats[b][:, mask].mean(1)
            assert torch.allclose(out[b][:, mask], expected[:, None].expand(-1, int(mask.sum())))


def test_boundaries_match_the_data_readers_edges() -> None:
    inst = torch.randint(0, 3, (2, 9, 7), generator=torch.Generator().manual_seed(1))
    ours = instance_boundaries(inst)
    assert ours.shape == (2, 1, 9, 7)
    for b in range(2):
        assert torch.equal(ours[b, 0], instance_edges(inst[b]))


def test_encoder_features_are_constant_per_instance() -> None:
    enc = InstanceFeatureEncoder(nef=4, n_downsampling=2)
    inst = torch.zeros(1, 16, 16, dtype=torch.long)
    inst[:, :, 8:] = 1
    out = enc(torch.rand(1, 3, 16, 16), inst)
    assert out.shape == (1, 3, 16, 16)
    assert torch.allclose(out[0, :, :, :8].std(dim=(1, 2)), torch.zeros(3), atol=1e-6)
    assert not torch.allclose(out[0, :, 0, 0], out[0, :, 0, 15])


def test_multiscale_discriminator_halves_the_input_per_scale() -> None:
    d = MultiscaleDiscriminator(cond_channels=4, num_d=3, ndf=4, n_layers=2, padding=2)
    outputs = d(torch.rand(2, 7, 64, 64))
    assert len(outputs) == 3
    # n_layers + 1 activations, then the logits
    assert all(len(feats) == 4 and feats[-1].shape[1] == 1 for feats in outputs)
    first = [feats[0].shape[-1] for feats in outputs]
    assert first[0] > first[1] > first[2]
    single = PatchGANDiscriminator(7, 4, 2, "instance", padding=2)
    single.load_state_dict(d.scales[0].state_dict())
    assert torch.equal(single(torch.ones(1, 7, 64, 64)), d(torch.ones(1, 7, 64, 64))[0][-1])


def test_patchgan_defaults_unchanged_and_features_end_with_logits() -> None:
    d = PatchGANDiscriminator(ndf=8, n_layers=2)
    x = torch.rand(1, 6, 32, 32)
    feats = d.forward_features(x)
    assert torch.equal(feats[-1], d(x)) and len(feats) == 4
    spectral = PatchGANDiscriminator(ndf=8, n_layers=2, spectral_norm=True)
    assert sum("parametrizations" in k for k in spectral.state_dict()) > 0


def test_hinge_and_lsgan_losses_follow_their_definitions() -> None:
    x = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    assert gan_loss(x, True, "hinge").item() == pytest.approx(torch.relu(1 - x).mean().item())
    assert gan_loss(x, False, "hinge").item() == pytest.approx(torch.relu(1 + x).mean().item())
    assert gan_loss(x, True, "hinge", for_generator=True).item() == pytest.approx(-x.mean().item())
    # the generator flag does not change the other modes
    assert gan_loss(x, True, "lsgan", True).item() == gan_loss(x, True, "lsgan").item()
    outs = [[torch.zeros(1)], [torch.ones(1) * 3]]
    per_scale = [gan_loss(o[-1], True, "lsgan").item() for o in outs]
    assert multiscale_gan_loss(outs, True, "lsgan").item() == pytest.approx(sum(per_scale))
    mean = multiscale_gan_loss(outs, True, "lsgan", reduction="mean").item()
    assert mean == pytest.approx(sum(per_scale) / 2)


def test_feature_matching_trains_only_the_fake_side() -> None:
    fake = [[torch.rand(1, 2, 4, 4, requires_grad=True), torch.rand(1, 1, 2, 2)]]
    real = [[torch.rand(1, 2, 4, 4, requires_grad=True), torch.rand(1, 1, 2, 2)]]
    loss = feature_matching_loss(fake, real, layer_weight=2.0)
    expected = 2.0 * (fake[0][0] - real[0][0]).abs().mean()
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None
    assert feature_matching_loss(fake, fake).item() == 0.0


def test_vgg_none_is_off_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        vgg = VGGLoss("none")
    assert "VGG loss switched off" in caplog.text
    assert vgg(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)).item() == 0.0
    assert vgg.describe() == {"vgg_loss": False, "vgg_weights": "none"}
    with pytest.raises(FileNotFoundError, match="not found"):
        VGGLoss("/nonexistent/vgg19.pt")


@pytest.mark.slow
def test_vgg_loss_from_a_local_state_dict(tmp_path) -> None:
    import torchvision

    path = tmp_path / "vgg19_features.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg19(weights=None).features.state_dict(), path)
    vgg = VGGLoss(str(path))
    assert vgg.describe()["vgg_loss"] and len(vgg.describe()["vgg_weights_sha256"]) == 64
    assert not list(vgg.parameters()) and not vgg.state_dict()  # not saved with the victim
    real = torch.rand(1, 3, 32, 32) * 2 - 1
    fake = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    loss = vgg(fake, real)
    assert loss.item() > 0 and vgg(real, real).item() == 0.0
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


@pytest.mark.parametrize("encoder,local", [(False, False), (True, False), (False, True)])
def test_trains_and_yields_signals(tmp_path, encoder: bool, local: bool) -> None:
    model = tiny_victim(encoder, local)
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
    assert any(k.startswith("discriminator.") for k in changed)
    assert any(k.startswith("generator.") for k in changed)
    if encoder:
        assert any(k.startswith("encoder.") for k in changed)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss_g_feat"]) and "train/loss_g_vgg" not in metrics
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)

    data = LabelPhotos()
    signals = next(model.iter_signals(DataLoader(data, batch_size=8)))
    assert signals["output"].shape == (8, 3, 32, 32)
    assert 0 <= signals["output"].min() and signals["output"].max() <= 1
    # The attack's backbone sees the grey label-id image, as the reference reads labelIds.
    assert signals["input"].shape == (8, 1, 32, 32)
    assert torch.equal(signals["input"][:, 0] * 255, data.labels.float())
    info = model.describe()
    assert info["vgg_loss"] is False and info["feature_encoder"] is encoder
    assert info["local_enhancer"] is local


def test_global_generator_frozen_during_fix_global_epochs(tmp_path) -> None:
    model = tiny_victim(local=True)
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(LabelPhotos(), batch_size=4))
    after = model.generator.state_dict()
    # Instance norm has no running state, so only trained weights could change.
    assert all(
        torch.equal(after[k], before[k]) for k in before if k.startswith("global_generator.")
    )
    assert any(not torch.equal(after[k], before[k]) for k in before if k.startswith("front."))


def test_wrong_channel_count_names_the_setting() -> None:
    model = tiny_victim()
    batch = {
        "sample_id": ["a"],
        "input": torch.rand(1, 2, 32, 32),
        "target": torch.rand(1, 3, 32, 32),
    }
    with pytest.raises(ValueError, match="label_nc"):
        model(batch)
