"""IResNet + margin head: shapes, a few training steps, auditable signals, verification metric."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import ArcFaceLoss, CosFaceLoss
from sklearn.metrics import roc_curve

from miabench.victims.face_recognition import FaceRecognitionVictim, VerificationMetrics
from miabench.victims.nets.iresnet import IResNet, iresnet, iresnet_test


def _victim(head: torch.nn.Module, n_classes: int = 4) -> FaceRecognitionVictim:
    torch.manual_seed(0)
    backbone = iresnet_test(in_channels=1, input_size=16, num_features=16)
    return FaceRecognitionVictim(backbone, head, lambda params: torch.optim.Adam(params, lr=3e-3))


def _batch(n: int = 16, n_classes: int = 4) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % n_classes
    prototypes = torch.rand(n_classes, 1, 16, 16, generator=g)
    x = (prototypes[labels] + 0.2 * torch.rand(n, 1, 16, 16, generator=g)).clamp(0, 1)
    return {
        "sample_id": [f"id{int(label)}/{i}" for i, label in enumerate(labels)],
        "input": x,
        "target": labels,
        "identity": labels,
    }


def test_iresnet_published_structure() -> None:
    net = iresnet(18)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    block = net.layer1[0]
    # BN-Conv-BN-PReLU-Conv-BN, stride on the second conv
    assert [
        type(m).__name__
        for m in (block.bn1, block.conv1, block.bn2, block.prelu, block.conv2, block.bn3)
    ] == ["BatchNorm2d", "Conv2d", "BatchNorm2d", "PReLU", "Conv2d", "BatchNorm2d"]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert net.fc.in_features == 512 * 7 * 7 and not net.features.weight.requires_grad
    net.eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 112, 112)).shape == (2, 512)
    with pytest.raises(ValueError, match="depth"):
        iresnet(42)
    with pytest.raises(ValueError, match="multiple of 16"):
        IResNet(input_size=100)


@pytest.mark.parametrize("head", ["cosface", "arcface"])
def test_margin_head_trains(head: str) -> None:
    loss_fn = (
        CosFaceLoss(4, 16, margin=0.35, scale=16)
        if head == "cosface"
        else ArcFaceLoss(4, 16, margin=28.6, scale=16)
    )
    victim = _victim(loss_fn)
    optimizer = victim.configure_optimizers()
    batch = _batch()
    victim.train()
    first = None
    for _ in range(25):
        loss = victim.head(victim(batch["input"]), batch["target"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = float(loss) if first is None else first
    assert float(loss) < 0.5 * first
    victim.eval()
    utility = victim.utility(victim.signal_step(batch))
    assert utility["identification"].mean() > 0.9  # it recognises the identities it trained on


def test_auditable_signals_and_fingerprint() -> None:
    victim = _victim(CosFaceLoss(4, 16)).eval()
    batch = _batch(8)
    assert victim.auditable_layers() == ("conv1", "conv2", "conv3", "conv4", "embedding")
    assert "activation.conv1" not in victim.signal_step(batch)
    victim.select_signals(
        ["sample_id", "activation.conv1", "activation.conv4", "activation.embedding"]
    )
    signals = victim.signal_step(batch)
    assert signals["activation.conv1"].shape == (8, 16, 8, 8)  # stage 1: 16 wide, 16 → 8 px
    assert signals["activation.conv4"].shape == (8, 64, 1, 1)
    assert torch.equal(signals["activation.embedding"], signals["embedding"])
    before = victim.fingerprint()
    state = {k: v.clone() for k, v in victim.state_dict().items()}
    state["backbone.conv1.weight"] += 1
    victim.load_state_dict(state)
    assert victim.fingerprint() != before
    with pytest.raises(ValueError, match="unknown auditable layer"):
        victim.select_signals(["activation.layer9"])


def test_verification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    identities = np.repeat(np.arange(10), 5)
    centres = rng.normal(size=(10, 8))
    embeddings = centres[identities] + rng.normal(scale=1.0, size=(50, 8))
    metric = VerificationMetrics(fars=(0.01, 0.1))
    metric.update(torch.tensor(embeddings[:20]), torch.tensor(identities[:20]))
    metric.update(torch.tensor(embeddings[20:]), torch.tensor(identities[20:]))
    out = metric.compute()

    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    i, j = np.triu_indices(50, k=1)
    sim, same = (e[i] * e[j]).sum(1), identities[i] == identities[j]
    fpr, tpr, _ = roc_curve(same, sim)
    for far in (0.01, 0.1):
        assert float(out[f"tar_at_far_{far:g}"]) == pytest.approx(tpr[fpr <= far].max(), abs=1e-6)
    # balanced pairs: all genuine + as many impostors (the metric's seeded draw), best threshold
    genuine, impostors = sim[same], sim[~same]
    pick = torch.randperm(len(impostors), generator=torch.Generator().manual_seed(0)).numpy()
    scores = np.concatenate([genuine, impostors[pick[: len(genuine)]]])
    labels = np.concatenate([np.ones(len(genuine)), np.zeros(len(genuine))])
    best = max(((scores >= t) == labels).mean() for t in np.append(scores, np.inf))
    assert float(out["verification_accuracy"]) == pytest.approx(best, abs=1e-6)
    assert best > 0.6
