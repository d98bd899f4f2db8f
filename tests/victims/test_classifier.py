"""The classifier victim (the low end of results/shafran2021_claims/), its loss and
confidence attacks, and the any-depth U-Net of the 16-px pix2pix point."""

from __future__ import annotations

import functools

import pytest
import torch
from sklearn.metrics import roc_auc_score

from miabench.attacks.confidence import Confidence
from miabench.attacks.segmentation import SegmentationReconstructionError
from miabench.victims.classifier import ClassifierVictim
from miabench.victims.nets.classifiers import TimmClassifier
from miabench.victims.nets.unet import UnetGenerator
from miabench.victims.nets.unet_depth import AnyDepthUnetGenerator

ADAM = functools.partial(torch.optim.Adam, lr=3e-3)


def tiny_victim(seed: int = 0) -> ClassifierVictim:
    torch.manual_seed(seed)
    net = TimmClassifier("test_resnet", num_classes=10, weights="none")
    return ClassifierVictim(net, ADAM, num_classes=10, normalize=False)


def batches(n: int, seed: int, size: int = 16) -> dict:
    """Random images with random labels: learnable only by memorising each one."""
    g = torch.Generator().manual_seed(seed)
    return {
        "sample_id": [f"s{seed}_{i}" for i in range(n)],
        "input": torch.rand(n, 3, size, size, generator=g),
        "target": torch.randint(0, 10, (n,), generator=g),
    }


def scores(victim: ClassifierVictim, batch: dict) -> dict[str, torch.Tensor]:
    victim.eval()
    with torch.no_grad():
        signals = victim.signal_step(batch)
    return {
        "loss": SegmentationReconstructionError("reconstruction", error="loss").score(signals)[
            "score"
        ],
        "confidence": Confidence("confidence").score(signals)["score"],
    }


def auc(member: torch.Tensor, nonmember: torch.Tensor) -> float:
    labels = [1] * len(member) + [0] * len(nonmember)
    return float(roc_auc_score(labels, torch.cat([member, nonmember]).numpy()))


def test_classifier_trains_and_yields_signals() -> None:
    victim = tiny_victim()
    batch = batches(4, seed=0)
    before = [p.detach().clone() for p in victim.parameters()]
    optimizer = victim.configure_optimizers()
    loss = victim.training_step(batch, 0)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, victim.parameters(), strict=True))
    victim.eval()
    with torch.no_grad():
        signals = victim.signal_step(batch)
    assert set(victim.provides) <= set(signals)
    assert signals["output"].shape == (4, 10, 1, 1) and signals["target"].shape == (4, 1, 1)
    assert torch.allclose(signals["output"].sum(1), torch.ones(4, 1, 1), atol=1e-5)
    # the loss attack's score is minus the cross-entropy of the victim's logits
    logits = victim.logits(batch["input"])
    ce = torch.nn.functional.cross_entropy(logits, batch["target"], reduction="none")
    assert torch.allclose(-scores(victim, batch)["loss"], ce.double(), atol=1e-5)
    utility = victim.utility(signals)
    assert torch.allclose(utility["loss"], ce.double(), atol=1e-5)
    assert set(utility["accuracy"].tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        ClassifierVictim(TimmClassifier("test_resnet", 1), ADAM, num_classes=1)


def test_overfit_classifier_is_attackable_untrained_is_not() -> None:
    members, nonmembers = batches(16, seed=1), batches(16, seed=2)
    untrained = scores(tiny_victim(), members), scores(tiny_victim(), nonmembers)
    victim = tiny_victim()
    optimizer = victim.configure_optimizers()
    victim.train()
    for _ in range(60):
        optimizer.zero_grad()
        victim.training_step(members, 0).backward()
        optimizer.step()
    trained = scores(victim, members), scores(victim, nonmembers)
    for attack in ("loss", "confidence"):
        assert auc(trained[0][attack], trained[1][attack]) > 0.85, attack
    # a never-trained victim knows nothing of its "members": chance level (16 vs 16
    # samples: the AUC's standard deviation under chance is about 0.1)
    assert abs(auc(untrained[0]["loss"], untrained[1]["loss"]) - 0.5) < 0.3


def test_confidence_statistics() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])[:, :, None, None]
    target = torch.tensor([1, 2])[:, None, None]
    top = Confidence("c", "max").score({"output": probs})["score"]
    assert torch.allclose(top, torch.tensor([0.7, 0.4], dtype=torch.float64))
    true = Confidence("c", "true_class").score({"output": probs, "target": target})["score"]
    assert torch.allclose(true, torch.tensor([0.2, 0.4], dtype=torch.float64))
    # dense outputs: the mean over pixels; a binary map's top probability is max(p, 1 - p)
    binary = torch.tensor([0.9, 0.2, 0.5, 0.6]).view(1, 1, 2, 2)
    assert torch.allclose(
        Confidence("c").score({"output": binary})["score"], torch.tensor([0.7], dtype=torch.float64)
    )
    assert Confidence("c", "true_class").requires == ("output", "target")
    with pytest.raises(ValueError, match="statistic must be one of"):
        Confidence("c", "median")


def test_any_depth_unet_is_unet_from_five_levels_and_reaches_16_px() -> None:
    for depth in (5, 6):
        torch.manual_seed(0)
        reference = UnetGenerator(num_downs=depth, ngf=4, dropout=0.5).state_dict()
        torch.manual_seed(0)
        ours = AnyDepthUnetGenerator(num_downs=depth, ngf=4, dropout=0.5).state_dict()
        assert list(ours) == list(reference)
        assert all(torch.equal(ours[k], reference[k]) for k in reference)
    small = AnyDepthUnetGenerator(num_downs=4, ngf=4).eval()
    out = small(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="divisible by 16"):
        small(torch.rand(1, 3, 24, 24))
    with pytest.raises(ValueError, match=">= 2"):
        AnyDepthUnetGenerator(num_downs=1)
