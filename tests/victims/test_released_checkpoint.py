"""Released InsightFace backbones: their key layout loads, a mismatched file is refused clearly,
a released victim refuses to train; block taps, the arcface_torch schedule, MINT MLP options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from miabench.attacks.mint import MintAuditor, MintCNN, MintMLP
from miabench.victims.face_recognition import (
    CheckpointMismatchError,
    FaceRecognitionVictim,
    load_insightface_backbone,
    warmup_poly_lambda,
)
from miabench.victims.nets.iresnet import iresnet_test

#: the tiny IResNet of the tests: widths of the stem and the four stages, one block each
WIDTHS = (8, 16, 32, 64, 64)


def insightface_state_dict(
    widths: tuple[int, ...] = WIDTHS,
    blocks: tuple[int, ...] = (1, 1, 1, 1),
    in_channels: int = 1,
    input_size: int = 16,
    features: int = 64,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A state dict named and shaped as InsightFace's arcface_torch ``backbones/iresnet.py``
    saves it (``conv1``/``bn1``/``prelu`` stem; ``layer<k>.<i>.{bn1, conv1, bn2, prelu, conv2,
    bn3}`` blocks with ``downsample.{0,1}`` on each stage's first block, whose conv2 has stride
    2; ``bn2``, ``fc``, ``features``), written out from that layout here rather than taken
    from our IResNet, so the test checks the layout and not our class against itself."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def bn(prefix: str, n: int) -> None:
        state[f"{prefix}.weight"] = torch.rand(n, generator=g) + 0.5
        state[f"{prefix}.bias"] = torch.randn(n, generator=g) * 0.1
        state[f"{prefix}.running_mean"] = torch.randn(n, generator=g) * 0.1
        state[f"{prefix}.running_var"] = torch.rand(n, generator=g) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    def conv(name: str, c_out: int, c_in: int, k: int) -> None:
        state[name] = torch.randn(c_out, c_in, k, k, generator=g) * 0.1

    conv("conv1.weight", widths[0], in_channels, 3)
    bn("bn1", widths[0])
    state["prelu.weight"] = torch.full((widths[0],), 0.25)
    c_in = widths[0]
    for k, (n_blocks, width) in enumerate(zip(blocks, widths[1:], strict=True), start=1):
        for i in range(n_blocks):
            p = f"layer{k}.{i}"
            bn(f"{p}.bn1", c_in)
            conv(f"{p}.conv1.weight", width, c_in, 3)
            bn(f"{p}.bn2", width)
            state[f"{p}.prelu.weight"] = torch.full((width,), 0.25)
            conv(f"{p}.conv2.weight", width, width, 3)
            bn(f"{p}.bn3", width)
            if i == 0:
                conv(f"{p}.downsample.0.weight", width, c_in, 1)
                bn(f"{p}.downsample.1", width)
            c_in = width
    bn("bn2", c_in)
    side = input_size // 16
    state["fc.weight"] = torch.randn(features, c_in * side * side, generator=g) * 0.05
    state["fc.bias"] = torch.zeros(features)
    bn("features", features)
    state["features.weight"] = torch.ones(features)  # InsightFace fixes its scale at 1
    return state


def write_insightface_checkpoint(path: Path, **kwargs: object) -> dict[str, torch.Tensor]:
    """``torch.save(backbone.state_dict(), path)``, as arcface_torch saves ``model.pt``."""
    state = insightface_state_dict(**kwargs)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def _backbone() -> torch.nn.Module:
    return iresnet_test(in_channels=1, input_size=16, num_features=64)


def test_insightface_layout_loads_exactly(tmp_path: Path) -> None:
    state = write_insightface_checkpoint(tmp_path / "backbone.pth")
    victim = FaceRecognitionVictim(
        _backbone(), None, torch.optim.SGD, weights=str(tmp_path / "backbone.pth")
    )
    loaded = victim.backbone.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert victim.released and victim.describe()["head"] is None
    assert len(victim.describe()["weights_sha256"]) == 64
    # the loaded network runs, and is deterministic in eval mode
    victim.eval()
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(victim(x), victim(x)) and victim(x).shape == (2, 64)
    # identification needs a head: NaN for a released backbone, never a made-up number
    utility = victim.utility({"embedding": victim(x), "target": torch.tensor([0, -1])})
    assert torch.isnan(utility["identification"]).all()
    # a released model is audited as is: training it is refused
    with pytest.raises(RuntimeError, match="trainer.max_epochs=0"):
        victim.on_train_epoch_start()


def test_a_mismatched_checkpoint_is_refused_naming_file_and_keys(tmp_path: Path) -> None:
    state = insightface_state_dict()
    del state["layer2.0.prelu.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_insightface_backbone(_backbone(), path)
    message = str(err.value)
    assert str(path) in message and "victim.net.weights" in message
    assert "missing keys: layer2.0.prelu.weight" in message
    assert "unexpected keys: layer5.0.conv1.weight" in message

    # another width: every key present, shapes differ
    wide = tmp_path / "wide.pth"
    torch.save(insightface_state_dict(widths=(8, 16, 32, 64, 128)), wide)
    with pytest.raises(
        CheckpointMismatchError, match=r"shape mismatches: .*bn2.bias: file \(128,\)"
    ):
        load_insightface_backbone(_backbone(), wide)

    # DataParallel-prefixed keys get a hint
    prefixed = tmp_path / "dp.pth"
    torch.save({f"module.{k}": v for k, v in insightface_state_dict().items()}, prefixed)
    with pytest.raises(CheckpointMismatchError, match="backbone.module.state_dict"):
        load_insightface_backbone(_backbone(), prefixed)

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="junk.pth is not a state_dict"):
        load_insightface_backbone(_backbone(), junk)
    with pytest.raises(FileNotFoundError, match="victim.net.weights"):
        load_insightface_backbone(_backbone(), tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="head is null"):
        FaceRecognitionVictim(_backbone(), None, torch.optim.SGD)


def test_block_taps_read_each_blocks_last_convolution() -> None:
    torch.manual_seed(0)
    backbone = iresnet_test(in_channels=1, input_size=16, num_features=16)
    victim = FaceRecognitionVictim(backbone, torch.nn.Linear(1, 1), torch.optim.SGD)
    layers = victim.auditable_layers()
    assert {"conv1", "conv4", "conv1.0", "conv4.0", "conv2.last", "embedding"} <= set(layers)
    victim.select_signals(["activation.conv2", "activation.conv2.last", "activation.conv3.0"])
    victim.eval()
    x = torch.rand(3, 1, 16, 16)
    signals = victim.signal_step(
        {"sample_id": list("abc"), "input": x, "target": torch.zeros(3), "identity": torch.zeros(3)}
    )
    # the final convolution precedes its BN and the shortcut sum: not the stage output
    block = backbone.layer2[0]
    stage_in = backbone.layer1(backbone.prelu(backbone.bn1(backbone.conv1(x * 2 - 1))))
    expected = block.conv2(block.prelu(block.bn2(block.conv1(block.bn1(stage_in)))))
    assert torch.allclose(signals["activation.conv2.last"], expected, atol=1e-6)
    assert not torch.allclose(signals["activation.conv2"], expected)
    assert signals["activation.conv3.0"].shape == (3, 64, 2, 2)  # layer3: width 64, side 16/8


def test_insightface_schedule_warms_up_then_decays_polynomially() -> None:
    f = warmup_poly_lambda(warmup_steps=4, total_steps=14, power=2.0)
    assert [f(s) for s in range(4)] == [0.0, 0.25, 0.5, 0.75]
    assert f(4) == 1.0 and f(9) == pytest.approx(0.25) and f(14) == 0.0 and f(20) == 0.0
    # through torch's LambdaLR, stepped per optimiser step
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, f)
    rates = []
    for _ in range(14):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert rates[2] == pytest.approx(0.05) and rates[4] == pytest.approx(0.1)
    assert rates[9] == pytest.approx(0.025) and all(
        a >= b for a, b in zip(rates[4:], rates[5:], strict=False)
    )
    with pytest.raises(ValueError, match="must exceed"):
        warmup_poly_lambda(5, 5)


def test_mint_mlp_as_written_and_unstandardised() -> None:
    default = MintMLP(10)
    literal = MintMLP(10, standardize=False, as_written=True)
    linear = [m for m in literal.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(10, 10), (10, 64), (64, 1)]
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in literal.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in default.modules())
    cnn = MintCNN(4, (8, 8), standardize=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in cnn.modules())
    auditor = MintAuditor("a", ["embedding"], standardize=False, mlp_as_written=True, l1=0.1)
    model = auditor._build(torch.zeros(2, 10))
    assert sum(isinstance(m, torch.nn.Linear) for m in model.modules()) == 3
    assert auditor.describe()["mlp_as_written"] and not auditor.describe()["standardize"]
    with pytest.raises(ValueError, match="mlp_as_written applies to arch 'mlp'"):
        MintAuditor("c", ["conv1"], arch="cnn", mlp_as_written=True)


def test_insightface_schedule_in_a_lightning_fit() -> None:
    import lightning.pytorch as pl
    from pytorch_metric_learning.losses import CosFaceLoss
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    items = [
        {
            "sample_id": f"id{i % 2}/{i}",
            "input": torch.rand(1, 16, 16),
            "target": torch.tensor(i % 2),
            "identity": torch.tensor(i % 2),
        }
        for i in range(8)
    ]
    victim = FaceRecognitionVictim(
        iresnet_test(in_channels=1, input_size=16, num_features=16),
        CosFaceLoss(2, 16, margin=0.35, scale=32),
        lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4),
        scheduler="insightface",
        warmup_epochs=1,
    )
    rates: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, *args) -> None:  # noqa: ANN001, ANN002
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = pl.Trainer(
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record()],
    )
    trainer.fit(victim, DataLoader(items, batch_size=2))  # 4 steps per epoch, 12 in all
    # epoch 1 warms up from 0; then (1 - t/8)^2 down towards 0 at step 12
    assert rates[:4] == pytest.approx([0.0, 0.025, 0.05, 0.075])
    assert rates[4] == pytest.approx(0.1) and rates[8] == pytest.approx(0.1 * 0.5**2)
    assert rates[-1] == pytest.approx(0.1 * (1 - 7 / 8) ** 2)
