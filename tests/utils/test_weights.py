"""The one weights loader: ``imagenet | <path> | none`` for every backbone in miabench."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
import torchvision

import miabench.utils.weights as weights_module
from miabench.attacks.predictability.backbone import FeatureBackbone
from miabench.prefetch_weights import backbones
from miabench.utils.weights import (
    WeightsRecord,
    build_with_weights,
    checkpoint_path,
    torchvision_name,
)
from miabench.victims.detection import classifier_backbone
from miabench.victims.nets.classifiers import TimmClassifier
from miabench.victims.nets.seg_backbones import UPerNet, timm_features
from miabench.victims.nets.vgg_loss import VGGLoss


def _resnet18(pretrained: bool) -> torch.nn.Module:
    enum = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    return torchvision.models.resnet18(weights=enum if pretrained else None)


def _load(weights: str | Path, **kwargs: object) -> tuple[torch.nn.Module, WeightsRecord]:
    return build_with_weights(
        weights,
        _resnet18,
        what="torchvision's resnet18",
        imagenet=torchvision_name("resnet18", "IMAGENET1K_V1"),
        **kwargs,
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No download works: torchvision, timm and smp (Hugging Face hub) all fail."""

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", unreachable)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", unreachable)
    monkeypatch.setattr(smp.encoders, "hf_hub_download", unreachable)


# Each caller of the loader, built with `weights` (small networks where the caller allows).
CALLERS: dict[str, tuple[Callable[[str], object], str]] = {
    "detection": (lambda w: classifier_backbone("resnet18", w), "weights"),
    "predictability": (lambda w: FeatureBackbone("resnet18", w), "weights"),
    "vgg_loss": (lambda w: VGGLoss(w), "vgg_weights"),
    "timm_features": (lambda w: timm_features("resnet18", w, (1, 2)), "weights"),
    "timm_classifier": (lambda w: TimmClassifier("resnet18", 3, w), "weights"),
    "upernet": (lambda w: UPerNet("resnet18", 3, w, decoder_channels=8), "weights"),
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_imagenet_offline_gives_the_one_message(caller: str, offline: None) -> None:
    build, key = CALLERS[caller]
    with pytest.raises(RuntimeError, match="could not load the ImageNet weights") as info:
        build("imagenet")
    message = str(info.value)
    assert "OSError: network is unreachable" in message
    assert f"{key}=<path to a local state_dict> or {key}=none" in message
    # it names the very entry of `python -m miabench.prefetch_weights` that would fix it
    name = message.split("prefetch_weights --only ", 1)[1].split("`", 1)[0]
    assert name in {b.name for b in backbones()}, name
    assert name.split(":", 1)[0] in {"torchvision", "timm", "smp"}


def test_path_is_loaded_and_its_sha256_recorded(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = torchvision.models.resnet18()
    path = tmp_path / "r18.pt"
    torch.save(source.state_dict(), path)
    model, record = _load(str(path))
    assert record == WeightsRecord(str(path), path, hashlib.sha256(path.read_bytes()).hexdigest())
    assert record.describe(prefix="vgg_") == {
        "vgg_weights": str(path),
        "vgg_weights_sha256": record.sha256,
    }
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_every_caller_records_the_sha256_of_its_file(caller: str, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    if caller in ("timm_features", "timm_classifier"):
        state = timm.create_model("resnet18", num_classes=3).state_dict()
    elif caller == "vgg_loss":
        # vgg19's `features` alone (cheaper than building the whole network)
        vgg = torchvision.models.vgg
        state = vgg.make_layers(vgg.cfgs["E"]).state_dict()
    else:
        state = torchvision.models.resnet18().state_dict()
    torch.save(state, path)
    built = CALLERS[caller][0](str(path))
    info = built[1] if caller in ("detection", "timm_features") else built.describe()
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha in info.values(), info


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_wrong_keys_name_the_key_the_path_and_the_keys(caller: str, tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"conv1.weight": torch.zeros(1), "not_a_layer.weight": torch.zeros(1)}, path)
    build, key = CALLERS[caller]
    with pytest.raises(ValueError, match=f"{key}: {path}: not a state_dict of") as info:
        build(str(path))
    assert "not_a_layer.weight" in str(info.value) or "size mismatch" in str(info.value)


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    state = torchvision.models.resnet18().state_dict()
    state["extra.weight"] = state.pop("fc.weight")
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"(?s)Missing key.*fc\.weight.*Unexpected key.*extra\.weight"
    ):
        _load(path)


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_missing_file_names_the_key_and_the_path(caller: str, tmp_path: Path) -> None:
    build, key = CALLERS[caller]
    missing = tmp_path / "missing.pt"
    with pytest.raises(FileNotFoundError, match=f"^{key}: .*'{missing}' not found"):
        build(str(missing))


def test_checkpoint_path_without_key_keeps_its_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="^backbone weights .* does not exist"):
        checkpoint_path(tmp_path / "x.pt")


def test_none_reads_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights: none must not touch a file")

    monkeypatch.setattr(torch, "load", no_reading)
    monkeypatch.setattr(weights_module, "sha256_file", no_reading)
    monkeypatch.setattr(weights_module, "checkpoint_path", no_reading)
    model, record = _load("none")
    assert record == WeightsRecord("none") and record.describe() == {"weights": "none"}
    assert isinstance(model, torchvision.models.ResNet)


def test_none_follows_the_global_seed_unless_seeded() -> None:
    torch.manual_seed(0)
    a, _ = _load("none")
    torch.manual_seed(0)
    b, _ = _load("none")
    c, _ = _load("none")
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(b.conv1.weight, c.conv1.weight)
    # seed_none: the same network whatever ran before, and the global state is left alone
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    d, _ = _load("none", seed_none=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.rand(5)
    e, _ = _load("none", seed_none=0)
    assert torch.equal(d.conv1.weight, e.conv1.weight)
    assert torch.equal(d.conv1.weight, a.conv1.weight)
