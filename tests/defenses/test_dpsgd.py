"""DP-SGD inside Lightning: BatchNorm fixed and trained, per-sample gradients of a network
called twice, ε equal to Opacus' accountant, BatchMemoryManager for large batches."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.validators import ModuleValidator
from torch import nn

from miabench.defenses.base import DefenseNotApplicable
from miabench.defenses.dpsgd import DPSGD
from miabench.victims.nets.patchgan import PatchGANDiscriminator, gan_loss
from tests.defenses.conftest import TinySegVictim, fit, tiny_pix2pix


def _epsilon(noise: float, sample_rate: float, steps: int, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = [(noise, sample_rate, steps)]
    return accountant.get_epsilon(delta=delta)


def test_batchnorm_victim_is_fixed_trains_and_reports_opacus_epsilon(dm: Any) -> None:
    module = TinySegVictim(lr=0.5)
    defense = DPSGD(noise_multiplier=0.8, max_grad_norm=1.0, delta=1e-3)
    before = {k: v.clone() for k, v in ModuleValidator.fix(module.net).state_dict().items()}
    trainer = fit(defense, module, dm, max_epochs=3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in module.modules())
    assert ModuleValidator.validate(module.net, strict=False) == []
    report = defense.report()
    assert any("BatchNorm2d → GroupNorm" in fix for fix in report["module_fixes"]["net"])
    assert all(torch.isfinite(torch.tensor(module.losses)))
    assert any(not torch.equal(before[k], v) for k, v in module.net.state_dict().items())

    steps = report["steps"]
    assert steps == 3 * len(dm.train_dataloader()) == report["optimizer_steps"][0]
    assert report["sample_rate"] == pytest.approx(1 / len(dm.train_dataloader()))
    assert report["mechanisms_per_step"] == 1
    assert report["epsilon"] == pytest.approx(
        _epsilon(0.8, report["sample_rate"], steps, 1e-3), rel=1e-9
    )
    assert len(report["epsilon_per_epoch"]) == 3
    assert report["epsilon_per_epoch"] == sorted(report["epsilon_per_epoch"])
    assert float(trainer.callback_metrics["dp/epsilon"]) == pytest.approx(report["epsilon"])
    # per-sample hooks are gone after training: the victim runs as a plain module
    module.net(torch.rand(2, 3, 8, 8))
    assert all(getattr(p, "grad_sample", None) is None for p in module.parameters())


def test_pix2pix_privatises_both_networks_and_composes_their_budgets(dm: Any) -> None:
    module = tiny_pix2pix()
    defense = DPSGD(noise_multiplier=1.2, max_grad_norm=1.0, delta=1e-3)
    fit(defense, module, dm, max_epochs=2)
    report = defense.report()
    assert report["networks"] == ["generator", "discriminator"]
    assert set(report["module_fixes"]) == {"generator", "discriminator"}
    assert report["optimizer_steps"] == [report["steps"], report["steps"]]
    assert report["mechanisms_per_step"] == 2
    # one accountant step per Poisson batch at σ/√2 (the two releases on one batch)
    expected = _epsilon(1.2 / 2**0.5, report["sample_rate"], report["steps"], 1e-3)
    assert report["epsilon"] == pytest.approx(expected, rel=1e-9)
    assert report["epsilon"] > _epsilon(1.2, report["sample_rate"], report["steps"], 1e-3)


def test_target_epsilon_is_reached(dm: Any) -> None:
    defense = DPSGD(target_epsilon=8.0, max_grad_norm=1.0, delta=1e-3)
    fit(defense, TinySegVictim(), dm, max_epochs=2)
    report = defense.report()
    assert report["epsilon"] == pytest.approx(8.0, rel=0.02)


def test_batch_memory_manager_splits_logical_batches(aligned_root: Any) -> None:
    from tests.defenses.conftest import datamodule

    dm = datamodule(aligned_root, batch_size=8)  # one logical batch of ~8 per epoch

    class Sizes(TinySegVictim):
        sizes: list[int] = []

        def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
            Sizes.sizes.append(len(batch["sample_id"]))
            return super().training_step(batch, batch_idx)

    defense = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-3, max_physical_batch_size=2)
    fit(defense, Sizes(), dm, max_epochs=4)
    report = defense.report()
    assert max(Sizes.sizes) <= 2 and len(Sizes.sizes) > 4
    assert report["steps"] == 4 == report["optimizer_steps"][0]  # one step per logical batch


def test_discriminator_called_twice_gets_summed_per_sample_gradients() -> None:
    torch.manual_seed(0)
    disc = ModuleValidator.fix(PatchGANDiscriminator(6, ndf=4, n_layers=2))
    for m in disc.modules():  # as DPSGD.prepare_module does
        if getattr(m, "inplace", False):
            m.inplace = False
    gsm = GradSampleModule(disc, batch_first=True, loss_reduction="mean")
    real, fake = torch.rand(3, 6, 32, 32), torch.rand(3, 6, 32, 32)

    def loss(r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return 0.5 * (gan_loss(disc(f), False) + gan_loss(disc(r), True))

    loss(real, fake).backward()
    weight = disc.model[0].weight
    per_sample = weight.grad_sample.clone()
    gsm.remove_hooks()
    for i in range(3):
        disc.zero_grad()
        loss(real[i : i + 1], fake[i : i + 1]).backward()
        assert torch.allclose(per_sample[i], weight.grad, atol=1e-6)


def test_dpsgd_refuses_unknown_networks_and_bad_settings() -> None:
    with pytest.raises(DefenseNotApplicable, match="no child network"):
        DPSGD(
            noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, networks=["encoder"]
        ).prepare_module(tiny_pix2pix())
    with pytest.raises(ValueError, match="exactly one"):
        DPSGD(max_grad_norm=1.0, delta=1e-5)


def test_empty_poisson_batches_are_replaced_and_stepped(aligned_root: Any) -> None:
    from tests.defenses.conftest import datamodule

    # q = 1/8 over 8 members: about a third of the Poisson batches are empty
    dm = datamodule(aligned_root, batch_size=1)
    defense = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-3)
    fit(defense, tiny_pix2pix(), dm, max_epochs=3)
    report = defense.report()
    assert report["empty_batches_replaced"] > 0
    assert report["steps"] == 3 * 8 == report["optimizer_steps"][0]  # empty ones stepped too


def test_empty_safe_collate_keeps_structure() -> None:
    from miabench.defenses.dpsgd import EmptySafeCollate

    collate = EmptySafeCollate(None)
    with pytest.raises(RuntimeError, match="first Poisson batch is empty"):
        collate([])
    item = {"sample_id": "a", "input": torch.zeros(3, 4, 4), "label": torch.tensor(1)}
    collate([item, item])
    empty = collate([])
    assert empty["sample_id"] == ["<empty>"]
    assert empty["input"].shape == (1, 3, 4, 4) and empty["label"].shape == (1,)
