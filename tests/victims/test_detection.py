"""Face-detection victims: each torchvision detector trains a few steps in Lightning and is
attacked; loss signals change nothing; backbone weights come only from where they are told;
mAP follows WIDER's ignore semantics."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torchvision
from torch.utils.data import DataLoader

from miabench.attacks.detection import BoxError, DetectionConfidence, DetectionLoss
from miabench.data.embedded.face_composites import build_faces_on_scenes
from miabench.data.wider_face import WiderFaceDataset, collate
from miabench.victims.detection import (
    DetectionVictim,
    build_fcos,
    build_retinanet,
    build_ssdlite,
    classifier_backbone,
)

SIZE = 64
BUILDERS = {
    "retinanet": partial(build_retinanet, anchor_base_sizes=(8, 16, 32, 64, 128)),
    "fcos": build_fcos,
    "ssdlite": partial(build_ssdlite, width_mult=0.25),
}


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> WiderFaceDataset:
    root = tmp_path_factory.mktemp("fos") / "faces"
    build_faces_on_scenes(root, n_train=8, n_val=1, image_size=SIZE, face_size=(12, 24), seed=0)
    return WiderFaceDataset(root, "train", image_size=SIZE)


@pytest.fixture(autouse=True)
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to fetch weights: `none` and paths must not download."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args}")

    # where torchvision's WeightsEnum.get_state_dict fetches from
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def _victim(name: str, weights: str = "none") -> DetectionVictim:
    detector = BUILDERS[name](image_size=SIZE, weights=weights)
    return DetectionVictim(detector, partial(torch.optim.Adam, lr=1e-3))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_detector_trains_and_is_attacked(name: str, faces: WiderFaceDataset) -> None:
    torch.manual_seed(0)
    victim = _victim(name)
    before = copy.deepcopy(victim.state_dict())
    loader = DataLoader(faces, batch_size=4, collate_fn=collate)
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(victim, loader)
    assert trainer.global_step == 3
    assert any(not torch.equal(before[k], v) for k, v in victim.state_dict().items())
    assert torch.isfinite(trainer.callback_metrics["train/loss"])

    signals = next(victim.iter_signals(loader))
    assert set(victim.provides) <= set(signals)
    assert signals["loss"].shape == (4,)
    torch.testing.assert_close(signals["loss"], sum(signals["loss_terms"].values()))
    assert {"classification", "bbox_regression"} <= set(signals["loss_terms"])
    assert len(signals["detections"]) == 4
    for det in signals["detections"]:
        assert det["boxes"].shape[1:] == (4,) and len(det["scores"]) == len(det["boxes"])
    for attack in (DetectionLoss(), DetectionConfidence(statistic="topk_mean"), BoxError()):
        attack.check_signals(victim.provides)
        out = attack.score(signals)
        assert out["score"].shape == (4,) and torch.isfinite(out["score"]).all()
    assert victim.utility(signals)["loss"].shape == (4,)
    info = victim.describe()
    assert info["detector"] == name and info["weights"] == "none" and info["parameters"] > 0


@pytest.mark.parametrize("name", ["retinanet", "ssdlite"])  # both have trainable BatchNorm
def test_loss_signal_changes_nothing(name: str, faces: WiderFaceDataset) -> None:
    victim = _victim(name).eval()
    state = copy.deepcopy(victim.state_dict())
    assert any("running_mean" in k for k in state)
    batch = collate([faces[i] for i in range(3)])
    first = victim.signal_step(batch)
    second = victim.signal_step(batch)
    for k, v in victim.state_dict().items():
        assert torch.equal(state[k], v), k  # BatchNorm statistics included
    torch.testing.assert_close(first["loss"], second["loss"])
    assert not victim.training and not any(m.training for m in victim.modules())
    # one image alone gets the same loss as inside the batch: losses are per image
    alone = victim.signal_step(collate([faces[1]]))
    torch.testing.assert_close(alone["loss"][0], first["loss"][1])


def test_backbone_weights_from_a_file(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    detector = build_retinanet(image_size=SIZE, weights=str(path))
    assert detector.backbone_info["weights"] == f"file:{path}"
    body = detector.backbone.body
    torch.testing.assert_close(body.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    # pretrained BatchNorm is frozen, as torchvision does when fine-tuning
    assert isinstance(body.bn1, torchvision.ops.FrozenBatchNorm2d)

    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(ValueError, match="r34.pt: not a state_dict of torchvision's resnet18"):
        build_fcos(image_size=SIZE, weights=str(tmp_path / "r34.pt"))
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        classifier_backbone("resnet18", str(tmp_path / "missing.pt"))


def test_map_counts_ignored_faces_as_neither_hit_nor_miss() -> None:
    """WIDER's `invalid` faces: a detection on one is no false positive, missing it no miss."""
    victim = _victim("ssdlite")
    face, invalid = [10.0, 10, 30, 30], [40.0, 40, 60, 60]
    signals = {
        "boxes": [torch.tensor([face, invalid])],
        "ignore": [torch.tensor([False, True])],
        "input": torch.zeros(1, 3, 64, 64),
    }

    def map_of(boxes: list[list[float]], scores: list[float]) -> dict[str, float]:
        metrics = {k: m for k, m in victim.utility_metrics().items() if k.startswith("map")}
        detections = [{"boxes": torch.tensor(boxes).reshape(-1, 4), "scores": torch.tensor(scores)}]
        victim.update_utility_metrics(metrics, {**signals, "detections": detections})
        return {k: float(m.compute()) for k, m in metrics.items()}

    assert map_of([face], [0.9]) == {"map": 1.0, "map_50": 1.0}
    # a confident detection on the ignored face does not lower the precision
    assert map_of([invalid, face], [0.95, 0.9]) == {"map": 1.0, "map_50": 1.0}
    # whereas a confident false positive elsewhere does
    assert map_of([[0.0, 40, 20, 60], face], [0.95, 0.9])["map_50"] < 1.0
