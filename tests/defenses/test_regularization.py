"""Weight decay, dropout and label smoothing reach what they should, on pix2pix (manual
optimisation, two optimizers) and on a tiny automatic-optimisation victim."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from miabench.defenses.base import DefenseNotApplicable
from miabench.defenses.regularization import Dropout, LabelSmoothing, WeightDecay
from tests.defenses.conftest import TinySegVictim, fit, tiny_pix2pix


class GroupRecorder(pl.Callback):
    """Records the weight decay of every param group the optimizers step with."""

    def __init__(self) -> None:
        self.decays: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.decays += [g["weight_decay"] for o in trainer.optimizers for g in o.param_groups]


@pytest.mark.parametrize("victim", [tiny_pix2pix, TinySegVictim])
def test_weight_decay_reaches_every_optimizer(victim: Any, dm: Any) -> None:
    module = victim()
    recorder = GroupRecorder()
    defense = WeightDecay(0.05)
    fit(defense, module, dm, callbacks=[recorder])
    assert recorder.decays and set(recorder.decays) == {0.05}
    n_optimizers = 2 if victim is tiny_pix2pix else 1
    assert len(defense.report()["optimizers"]) == n_optimizers


def test_weight_decay_shrinks_weights(dm: Any) -> None:
    # the same initial weights and batches, with and without decay: decay ends smaller
    torch.manual_seed(0)
    base = TinySegVictim(lr=0.5)
    decayed = TinySegVictim(lr=0.5)
    decayed.load_state_dict(base.state_dict())
    torch.manual_seed(1)
    fit(WeightDecay(0.0), base, dm)
    torch.manual_seed(1)
    fit(WeightDecay(0.5), decayed, dm)
    norm = lambda m: torch.cat([p.detach().flatten() for p in m.net.parameters()]).norm()  # noqa: E731
    assert norm(decayed) < norm(base)


def test_dropout_rate_set_on_existing_layers() -> None:
    module = tiny_pix2pix(num_downs=6, dropout=0.5)
    keys = set(module.state_dict())
    defense = Dropout(0.2)
    defense.prepare_module(module)
    rates = [m.p for m in module.modules() if isinstance(m, nn.Dropout)]
    assert rates and set(rates) == {0.2}
    assert defense.report()["mode"] == "set"
    assert set(module.state_dict()) == keys


def test_dropout_inserted_after_activations_keeps_state_dict() -> None:
    module = tiny_pix2pix(num_downs=5)
    assert not any(isinstance(m, nn.Dropout) for m in module.modules())
    keys = set(module.state_dict())
    Dropout(0.5, modules=["generator"]).prepare_module(module)
    inserted = [m for m in module.generator.modules() if isinstance(m, nn.Dropout)]
    assert inserted and all(m.p == 0.5 for m in inserted)
    assert not any(isinstance(m, nn.Dropout) for m in module.discriminator.modules())
    assert set(module.state_dict()) == keys
    x = torch.rand(2, 3, 32, 32)
    module.train()
    assert not torch.equal(module(x), module(x))  # random in training
    module.eval()
    assert torch.equal(module(x), module(x))  # identity at inference


def test_dropout_refuses_a_victim_without_activations() -> None:
    module = TinySegVictim()
    module.net = nn.Sequential(nn.Conv2d(3, 2, 1))
    with pytest.raises(DefenseNotApplicable, match="activation"):
        Dropout(0.3).prepare_module(module)
    with pytest.raises(DefenseNotApplicable, match="no submodule 'encoder'"):
        Dropout(0.3, modules=["encoder"]).prepare_module(module)


def test_label_smoothing_reaches_the_loss(dm: Any) -> None:
    module = TinySegVictim()
    batch = next(iter(dm.train_dataloader()))
    plain = float(module.loss(batch))
    LabelSmoothing(0.3).prepare_module(module)
    assert module.label_smoothing == 0.3
    assert float(module.loss(batch)) != pytest.approx(plain)


def test_label_smoothing_refuses_pix2pix() -> None:
    with pytest.raises(DefenseNotApplicable, match="label_smoothing.*Pix2PixVictim"):
        LabelSmoothing(0.1).prepare_module(tiny_pix2pix())
