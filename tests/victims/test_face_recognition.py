"""IResNet + margin head: shapes, a few training steps, auditable signals, verification metric."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import ArcFaceLoss, CosFaceLoss
from sklearn.metrics import roc_curve
from torch.utils.data import DataLoader

from miabench.data.lfw_pairs import VerificationPairs
from miabench.metrics.verification import (
    VerificationMetrics,
    best_threshold,
    fold_accuracies,
    verification_benchmark_metrics,
)
from miabench.victims.face_recognition import FaceRecognitionVictim
from miabench.victims.nets.iresnet import IResNet, iresnet, iresnet_test
from tests.data.test_faces import write_lfw


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
    # stage outputs, then every block's last convolution (one block per stage here), then
    # the embedding
    blocks = tuple(f"conv{k}.{b}" for k in range(1, 5) for b in ("0", "last"))
    assert victim.auditable_layers() == ("conv1", "conv2", "conv3", "conv4", *blocks, "embedding")
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


def _brute_force_fold_accuracies(scores: np.ndarray, same: np.ndarray, folds: int) -> list[float]:
    """Reference LFW protocol, written independently of the implementation: contiguous folds
    by ``np.array_split``; on the other folds try every observed score and +inf as "same if
    score >= t", keep the first (highest) most accurate; score the held-out fold."""
    accuracies = []
    for test in np.array_split(np.arange(len(scores)), folds):
        train = np.setdiff1d(np.arange(len(scores)), test) if folds > 1 else test
        candidates = np.concatenate([[np.inf], np.unique(scores[train])[::-1]])
        correct = [((scores[train] >= t) == same[train]).sum() for t in candidates]
        t = candidates[int(np.argmax(correct))]
        accuracies.append(float(((scores[test] >= t) == same[test]).mean()))
    return accuracies


@pytest.mark.parametrize(("n_pairs", "folds"), [(120, 10), (101, 10), (40, 3), (30, 1)])
def test_fold_accuracies_match_a_brute_force_reference(n_pairs: int, folds: int) -> None:
    rng = np.random.default_rng(n_pairs + folds)
    same = rng.random(n_pairs) < 0.5
    # genuine pairs score higher on average; rounding makes ties, which must break alike
    scores = np.round(np.where(same, 0.3, 0.0) + rng.normal(0, 0.25, n_pairs), 1)
    ours = fold_accuracies(scores, same, folds)
    assert len(ours) == folds
    assert ours.tolist() == pytest.approx(_brute_force_fold_accuracies(scores, same, folds))
    assert 0.55 < ours.mean() < 1.0  # informative scores: above chance, not perfect


def test_threshold_ties_break_to_the_strictest() -> None:
    # "same if >= 0.9" and "same if >= 0.4" both get 3 of 4 right; InsightFace's argmax over
    # increasing distances keeps the strictest, and so a held-out 0.5 is rejected
    scores, same = np.array([0.9, 0.6, 0.4, 0.1]), np.array([True, False, True, False])
    assert best_threshold(scores, same) == 0.9
    assert best_threshold(np.array([0.3, 0.2]), np.array([False, False])) == np.inf
    folds = fold_accuracies(np.array([0.5, 0.5, 0.9, 0.6, 0.4, 0.1]), np.repeat([True], 6), 1)
    assert folds.tolist() == [1.0]  # one fold: chosen and scored on all pairs


def test_benchmark_metrics_tar_matches_sklearn_and_random_scores_are_at_chance() -> None:
    rng = np.random.default_rng(0)
    same = np.tile(np.repeat([True, False], 300), 10)  # LFW's 10 x (300 + 300)
    scores = np.tanh(np.where(same, 0.8, 0.0) + rng.normal(0, 0.5, len(same)))
    out = verification_benchmark_metrics(torch.tensor(scores), torch.tensor(same), folds=10)
    fpr, tpr, _ = roc_curve(same, scores)
    for far in (1e-3, 1e-2):
        assert out[f"tar_at_far_{far:g}"] == pytest.approx(tpr[fpr <= far].max(), abs=1e-6)
    assert out["n_pairs"] == 6000 and out["n_same"] == 3000 and out["n_folds"] == 10
    assert out["accuracy"] == pytest.approx(np.mean(out["fold_accuracies"]))
    assert out["accuracy_std"] == pytest.approx(np.std(out["fold_accuracies"]))
    assert out["accuracy"] > 0.75
    # scores that carry no identity information: chance accuracy despite the fitted thresholds
    noise = verification_benchmark_metrics(rng.uniform(-1, 1, len(same)), same, folds=10)
    assert abs(noise["accuracy"] - 0.5) < 0.04
    assert noise["tar_at_far_0.01"] < 0.05
    with pytest.raises(ValueError, match="both same- and different-identity"):
        verification_benchmark_metrics(scores[:10], np.ones(10, dtype=bool))


class _NoIdentityEmbedding(torch.nn.Module):
    """Ignores its input: a random embedding per image, carrying no identity at all."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(x), self.dim, generator=self.generator)


def _embedding_victim(backbone: torch.nn.Module, dim: int = 32) -> FaceRecognitionVictim:
    head = CosFaceLoss(num_classes=2, embedding_size=dim)
    return FaceRecognitionVictim(backbone, head, lambda params: torch.optim.SGD(params, lr=0.1))


def test_benchmark_utility_scores_lfw_pairs(tmp_path: Path) -> None:
    pairs_file = write_lfw(tmp_path, folds=2, per_fold=50)  # 200 pairs, 2 folds
    bench = VerificationPairs(pairs_file, tmp_path / "lfw", name="tiny", image_size=16, channels=1)
    datamodule = SimpleNamespace(benchmark=bench, eval_batch_size=64, num_workers=0)
    torch.manual_seed(0)
    # an embedding in which near-identical images stay close: a fixed random projection
    projection = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 32))
    victim = _embedding_victim(projection)

    out = victim.benchmark_utility(datamodule, "cpu")
    assert list(out) == ["tiny"]
    tiny = out["tiny"]
    assert (tiny["n_pairs"], tiny["n_same"], tiny["n_folds"], tiny["flip"]) == (200, 100, 2, True)
    assert tiny["pairs"] == str(pairs_file)
    assert tiny["accuracy"] > 0.9 and tiny["tar_at_far_0.01"] > 0.5

    # flip: the embedding is that of the image plus that of its mirror, before normalising
    loader = DataLoader(bench.dataset(), batch_size=8)
    scores, same = victim.pair_scores(loader, "cpu", flip=True)
    item = bench.dataset()[4]
    with torch.no_grad():
        e1, e2 = (
            projection(x[None] * 2 - 1) + projection(x[None].flip(-1) * 2 - 1)
            for x in (item["first"], item["second"])
        )
    assert float(scores[4]) == pytest.approx(float(torch.cosine_similarity(e1, e2)), abs=1e-5)
    assert same.tolist() == [p.same for p in bench.pairs()]
    plain, _ = victim.pair_scores(loader, "cpu", flip=False)
    assert not torch.allclose(plain, scores)

    # a victim whose embeddings carry no identity is at chance on the same pairs
    blind = _embedding_victim(_NoIdentityEmbedding(32)).benchmark_utility(datamodule, "cpu")
    assert abs(blind["tiny"]["accuracy"] - 0.5) < 0.15
    assert blind["tiny"]["tar_at_far_0.01"] < 0.2
    # no benchmark on the data module: nothing to report
    assert victim.benchmark_utility(SimpleNamespace(), "cpu") == {}
