"""Segmentation victims: losses, utility metrics against sklearn, label smoothing, weights."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from sklearn.metrics import f1_score, jaccard_score

from miabench.metrics.segmentation import binary_overlap
from miabench.utils.hashing import sha256_file
from miabench.victims.nets.hrnetv2 import HRNetV2
from miabench.victims.nets.infnet import InfNet
from miabench.victims.nets.pranet import PraNet
from miabench.victims.nets.seg_backbones import UPerNet
from miabench.victims.segmentation import SegmentationVictim, mask_edges, structure_loss

ADAM = functools.partial(torch.optim.Adam, lr=1e-3)


class Conv(torch.nn.Module):
    """A one-layer 'network' for loss tests."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, k, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _batch(k: int, b: int = 4, size: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "sample_id": [f"s{i}" for i in range(b)],
        "input": torch.rand(b, 3, size, size, generator=g),
        "target": torch.randint(0, k, (b, size, size), generator=g),
    }


def test_training_loss_uses_label_smoothing() -> None:
    batch = _batch(5)
    batch["target"][0, :3] = 255
    net = Conv(5)
    losses = {}
    for smoothing in (0.0, 0.2):
        victim = SegmentationVictim(net, ADAM, num_classes=5, label_smoothing=smoothing)
        assert victim.label_smoothing == smoothing
        losses[smoothing] = victim.training_step(batch, 0).item()
        logits = net((batch["input"] - victim.mean) / victim.std)
        expected = F.cross_entropy(
            logits, batch["target"], ignore_index=255, label_smoothing=smoothing
        )
        assert losses[smoothing] == pytest.approx(expected.item(), rel=1e-5)
    assert losses[0.0] != losses[0.2]


def test_structure_loss_formula_and_edges() -> None:
    logits = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    ones, valid = torch.ones(2, 1, 16, 16), torch.ones(2, 1, 16, 16)
    # a uniform mask has no boundary: every weight is 1, so the loss is plain BCE + soft IoU
    pred = torch.sigmoid(logits)
    inter, union = pred.sum((2, 3)), (pred + 1).sum((2, 3))
    expected = F.binary_cross_entropy_with_logits(logits, ones, reduction="none").mean((2, 3))
    expected = (expected + 1 - (inter + 1) / (union - inter + 1)).mean()
    assert structure_loss(logits, ones, valid, kernel=5).item() == pytest.approx(
        expected.item(), rel=1e-5
    )
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    right = structure_loss(mask * 20 - 10, mask, valid[:1])
    wrong = structure_loss(10 - mask * 20, mask, valid[:1])
    assert right < 0.05 < wrong
    edges = mask_edges(mask)
    assert edges[0, 0, 4, 6] == 1 and edges[0, 0, 3, 6] == 1 and edges[0, 0, 8, 8] == 0


def test_utility_metrics_match_sklearn() -> None:
    k = 4
    victim = SegmentationVictim(Conv(k), ADAM, num_classes=k)
    victim.eval()
    batch = _batch(k, b=3)
    batch["target"][1, :, :4] = 255
    signals = victim.signal_step(batch)
    assert signals["output"].shape == (3, k, 16, 16)
    torch.testing.assert_close(signals["output"].sum(1), torch.ones(3, 16, 16))
    metrics = victim.utility_metrics()
    victim.update_utility_metrics(metrics, signals)
    miou = metrics["miou"].compute().item()
    pred = signals["output"].argmax(1).flatten().numpy()
    truth = signals["target"].flatten().numpy()
    keep = truth != 255
    # classes absent from both prediction and truth do not count (mmseg's nanmean)
    present = sorted(set(truth[keep]) | set(pred[keep]))
    expected = jaccard_score(truth[keep], pred[keep], labels=present, average="macro")
    assert miou == pytest.approx(expected, rel=1e-5)
    per_sample = victim.utility(signals)
    for i in range(3):
        t, p = (
            signals["target"][i].flatten().numpy(),
            signals["output"][i].argmax(0).flatten().numpy(),
        )
        assert per_sample["pixel_accuracy"][i].item() == pytest.approx((t == p)[t != 255].mean())


def test_binary_utility_matches_sklearn() -> None:
    victim = SegmentationVictim(Conv(1), ADAM, num_classes=1, loss="structure")
    victim.eval()
    batch = _batch(2, b=3)
    signals = victim.signal_step(batch)
    assert signals["output"].shape == (3, 1, 16, 16)
    per_sample = victim.utility(signals)
    for i in range(3):
        t = signals["target"][i].flatten().numpy()
        p = (signals["output"][i, 0] >= 0.5).long().flatten().numpy()
        assert per_sample["iou"][i].item() == pytest.approx(jaccard_score(t, p))
        assert per_sample["dice"][i].item() == pytest.approx(f1_score(t, p))
    metrics = victim.utility_metrics()
    victim.update_utility_metrics(metrics, signals)
    t = signals["target"].flatten().numpy()
    p = (signals["output"][:, 0] >= 0.5).long().flatten().numpy()
    assert metrics["dataset_dice"].compute().item() == pytest.approx(f1_score(t, p), rel=1e-5)
    assert metrics["dataset_iou"].compute().item() == pytest.approx(jaccard_score(t, p), rel=1e-5)
    empty = binary_overlap(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    assert empty["iou"].item() == 1.0 and empty["dice"].item() == 1.0


def test_bad_loss_choices_are_refused() -> None:
    with pytest.raises(ValueError, match="binary victims"):
        SegmentationVictim(Conv(1), ADAM, num_classes=1, loss="ce")
    with pytest.raises(ValueError, match="loss must be one of"):
        SegmentationVictim(Conv(3), ADAM, num_classes=3, loss="dice")


@pytest.mark.parametrize(
    ("make", "k", "loss"),
    [
        (lambda: UPerNet("resnet50", 3, "none", decoder_channels=16), 3, "ce"),
        (lambda: HRNetV2("hrnet_w18", 3, "none"), 3, "ce"),
        (lambda: PraNet("none"), 1, "structure"),
        (lambda: InfNet("none"), 1, "structure"),
    ],
    ids=["upernet", "hrnetv2", "pranet", "infnet"],
)
def test_nets_train_a_step_and_give_probabilities(make, k: int, loss: str) -> None:
    torch.manual_seed(0)
    victim = SegmentationVictim(make(), ADAM, num_classes=k, loss=loss)
    optimizer = victim.configure_optimizers()
    batch = _batch(max(k, 2), b=2, size=32)
    before = victim.training_step(batch, 0)
    before.backward()
    optimizer.step()
    assert torch.isfinite(before)
    victim.eval()
    out = victim.signal_step(batch)["output"]
    assert out.shape == (2, k, 32, 32) and 0.0 <= out.min() and out.max() <= 1.0
    assert victim.describe()["weights"] == "none"


def test_local_checkpoints_are_loaded_and_recorded(tmp_path: Path) -> None:
    resnet = torchvision.models.resnet50()
    path = tmp_path / "resnet50.pt"
    torch.save(resnet.state_dict(), path)
    net = UPerNet("resnet50", 3, str(path), decoder_channels=16)
    torch.testing.assert_close(net.model.encoder.conv1.weight, resnet.conv1.weight)
    assert net.describe() == {
        "backbone": "resnet50",
        "weights": str(path),
        "weights_sha256": sha256_file(path),
    }

    res2net = timm.create_model("res2net50_26w_4s")
    path = tmp_path / "res2net.pt"
    torch.save(res2net.state_dict(), path)
    pranet = PraNet(str(path))
    torch.testing.assert_close(pranet.backbone.conv1.weight, res2net.conv1.weight)
    assert pranet.describe()["weights_sha256"] == sha256_file(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        PraNet(str(tmp_path / "missing.pt"))
