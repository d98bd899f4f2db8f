"""MINT auditors: inputs per architecture, the chunked activation store, balanced fitting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from miabench.attacks.activations import ActivationStore
from miabench.attacks.mint import MintAuditor, MintCNN, channel_max
from miabench.victims.signals import LayerTap


def _signals(n: int, shift: float, generator: torch.Generator, offset: int = 0) -> dict[str, Any]:
    """Fake victim signals: conv1 maps whose channel maxima are shifted by ``shift``."""
    conv1 = torch.randn(n, 4, 6, 6, generator=generator)
    conv1[:, 0] += shift
    return {
        "sample_id": [f"s{offset + i}" for i in range(n)],
        "victim_fingerprint": "fake",
        "activation.conv1": conv1,
        "activation.embedding": torch.randn(n, 5, generator=generator),
    }


def _batches(n_batches: int, shift: float, seed: int = 0, consumed: list[int] | None = None) -> Any:
    """Calibration stream as the pipeline gives it: member and non-member batches interleaved."""

    def batches() -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        g = torch.Generator().manual_seed(seed)
        for b in range(n_batches):
            for label in (1, 0):
                if consumed is not None:
                    consumed.append(b)
                yield (
                    _signals(8, shift * label, g, offset=16 * b + 8 * label),
                    torch.full((8,), float(label)),
                )

    return batches


def test_inputs_per_architecture(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    signals = _signals(3, 0.0, g)
    mlp = MintAuditor("m", ["conv1", "embedding"], cache_dir=tmp_path)
    x = mlp.features(signals)
    assert x.shape == (3, 4 + 5)
    assert torch.equal(x[:, :4], signals["activation.conv1"].amax(dim=(2, 3)))
    assert torch.equal(
        channel_max(signals["activation.embedding"]), signals["activation.embedding"]
    )
    assert mlp.requires == (
        "sample_id",
        "victim_fingerprint",
        "activation.conv1",
        "activation.embedding",
    )
    cnn = MintAuditor("c", ["conv1"], arch="cnn", cache_dir=tmp_path)
    assert torch.equal(cnn.features(signals), signals["activation.conv1"])
    with pytest.raises(ValueError, match="one activation map"):
        MintAuditor("c", ["conv1", "conv2"], arch="cnn")
    with pytest.raises(ValueError, match="needs an activation map"):
        MintAuditor("c", ["embedding"], arch="cnn").features(signals)
    with pytest.raises(ValueError, match="arch"):
        MintAuditor("x", ["conv1"], arch="svm")
    # the CNN keeps tiny maps (a small victim's last stage) alive through its pools
    assert MintCNN(8, (1, 1))(torch.randn(2, 8, 1, 1)).shape == (2,)


def test_activation_store_chunks_and_keys(tmp_path: Path) -> None:
    x, y = torch.randn(10, 3), torch.arange(10).float()
    store = ActivationStore(tmp_path, chunk_rows=4, dtype=torch.float32)
    for start in range(0, 10, 3):
        store.append(
            x[start : start + 3],
            y[start : start + 3],
            [f"s{i}" for i in range(start, min(start + 3, 10))],
        )
    directory = store.finish("victim", {"layers": ["conv1"]})
    assert len(list(directory.glob("chunk_*.pt"))) == 3
    assert ActivationStore.open(directory)["n"] == 10
    rows = list(ActivationStore.chunks(directory))
    assert torch.equal(torch.cat([r[0] for r in rows]), x) and torch.equal(
        torch.cat([r[1] for r in rows]), y
    )
    shuffled = list(ActivationStore.chunks(directory, torch.Generator().manual_seed(1)))
    assert sorted(torch.cat([r[1] for r in shuffled]).tolist()) == y.tolist()
    # same inputs again: same folder, no second copy; another victim: another folder
    again = ActivationStore(tmp_path, chunk_rows=4)
    again.append(x, y, [f"s{i}" for i in range(10)])
    assert again.finish("victim", {"layers": ["conv1"]}) == directory
    other = ActivationStore(tmp_path, chunk_rows=4)
    other.append(x, y, [f"s{i}" for i in range(10)])
    assert other.finish("victim2", {"layers": ["conv1"]}) != directory
    assert not list(tmp_path.glob(".tmp-*"))
    aborted = ActivationStore(tmp_path)
    aborted.append(x, y, ["a"] * 10)
    aborted.abort()
    assert not list(tmp_path.glob(".tmp-*"))


def test_layer_tap_records_named_outputs() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with LayerTap({"hidden": net[1]}) as tap:
        out = net(torch.randn(5, 3))
    assert tap.outputs["hidden"].shape == (5, 4) and not tap.outputs["hidden"].requires_grad
    net(torch.randn(1, 3))  # hooks are gone after the block
    assert tap.outputs["hidden"].shape == (5, 4) and out.shape == (5, 2)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_auditor_learns_a_real_difference_and_not_a_missing_one(arch: str, tmp_path: Path) -> None:
    test_signals = {}
    g = torch.Generator().manual_seed(99)
    for label, shift in ((1, 1.5), (0, 0.0)):
        test_signals[label] = _signals(200, shift, g)

    def accuracy(attack: MintAuditor, shift: float) -> float:
        members = attack.score(
            {**_signals(200, shift, torch.Generator().manual_seed(5)), "victim_fingerprint": "f"}
        )
        nonmembers = attack.score(_signals(200, 0.0, torch.Generator().manual_seed(6)))
        return 0.5 * float(members["decision"].mean() + (1 - nonmembers["decision"]).mean())

    separable = MintAuditor(
        "a", ["conv1"], arch=arch, n_train=240, epochs=15, l1=1e-3, cache_dir=tmp_path
    )
    separable.fit(_batches(20, shift=1.5))
    assert accuracy(separable, 1.5) > 0.8
    same = MintAuditor(
        "b", ["conv1"], arch=arch, n_train=240, epochs=15, l1=1e-3, cache_dir=tmp_path
    )
    same.fit(_batches(20, shift=0.0, seed=1))
    assert abs(accuracy(same, 0.0) - 0.5) < 0.1


def test_fit_takes_the_first_n_balanced_and_stops(tmp_path: Path) -> None:
    consumed: list[int] = []
    attack = MintAuditor("a", ["embedding"], n_train=20, epochs=1, cache_dir=tmp_path)
    attack.fit(_batches(50, shift=0.0, consumed=consumed))
    assert (
        attack.describe()["n_train_members"] == 10 and attack.describe()["n_train_nonmembers"] == 10
    )
    assert max(consumed) <= 1  # 8 + 8 + 2 + 2: the stream stops in the second batch pair
    assert ActivationStore.open(attack.report["activation_store"])["n"] == 20
    # which samples it learned from: the first 10 of each class (batch 0, then 2 of batch 1)
    first = {f"s{i}" for i in range(16)} | {f"s{16 + i}" for i in (0, 1)} | {"s24", "s25"}
    assert attack.fitted_on == first
    # a calibration half smaller than N: all of it, recorded
    small = MintAuditor("s", ["embedding"], n_train=1000, epochs=1, cache_dir=tmp_path)
    small.fit(_batches(2, shift=0.0))
    assert small.describe()["n_train_members"] == 16
    with pytest.raises(RuntimeError, match="before fit"):
        MintAuditor("u", ["embedding"]).score(_signals(2, 0.0, torch.Generator()))
