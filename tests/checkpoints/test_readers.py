"""Detection, face-recognition and classifier readers, and the generic layouts (issue 28)."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from pytorch_metric_learning.losses import CosFaceLoss

from miabench.checkpoints import classifier, detection, insightface
from miabench.checkpoints.base import CheckpointError
from miabench.checkpoints.load import load_checkpoint
from miabench.utils.io import atomic_write, atomic_write_json
from miabench.victims.detection import build_ssdlite
from miabench.victims.face_recognition import FaceRecognitionVictim
from miabench.victims.nets.classifiers import TimmClassifier
from miabench.victims.nets.iresnet import iresnet_test
from miabench.victims.nets.patchgan import PatchGANDiscriminator
from miabench.victims.nets.unet import UnetGenerator
from miabench.victims.pix2pix import Pix2PixVictim


def _ssdlite() -> torch.nn.Module:
    return build_ssdlite(64, "mobilenet_v3_small", weights="none", width_mult=0.25)


@pytest.mark.slow
def test_torchvision_reference_dict_with_its_namespace(tmp_path: Path) -> None:
    trained = _ssdlite()
    path = tmp_path / "model_25.pth"
    torch.save(
        {
            "model": trained.state_dict(),
            "optimizer": {"state": {}, "param_groups": []},
            "lr_scheduler": {"last_epoch": 25},
            "args": argparse.Namespace(lr=0.02, epochs=26, data_path="/data/coco"),
            "epoch": 25,
        },
        path,
    )
    module = SimpleNamespace(detector=_ssdlite())
    info = detection.read(module, path)
    assert info.layout == "torchvision_detection_reference"
    assert info.details["epoch"] == 25 and info.details["args"]["lr"] == 0.02
    for k, v in trained.state_dict().items():
        assert torch.equal(module.detector.state_dict()[k], v)
    # a plain state dict, and a DetectionVictim's own (detector. prefix), load too
    plain = tmp_path / "plain.pth"
    torch.save({f"detector.{k}": v for k, v in trained.state_dict().items()}, plain)
    assert detection.read(module, plain).layout == "torchvision_detection"
    # any other pickled object is refused, named, and not unpickled
    hostile = tmp_path / "hostile.pth"
    torch.save({"model": trained.state_dict(), "when": datetime.date(2024, 1, 1)}, hostile)
    with pytest.raises(CheckpointError, match=r"hostile.pth.*datetime.date.*not unpickled"):
        detection.read(module, hostile)


def test_face_backbone_reader_reuses_the_insightface_loader(tmp_path: Path) -> None:
    def victim() -> FaceRecognitionVictim:
        backbone = iresnet_test(in_channels=3, input_size=32, num_features=16)
        head = CosFaceLoss(num_classes=3, embedding_size=16)
        return FaceRecognitionVictim(backbone, head, torch.optim.SGD)

    released = victim().backbone.state_dict()
    path = tmp_path / "backbone.pth"
    torch.save(released, path)
    module = victim()
    info = insightface.read(module, path)
    assert module.released and info.layout == "insightface_backbone"
    assert info.sha256 == module.describe()["weights_sha256"]
    renamed = dict(released)
    renamed["fc.weight_renamed"] = renamed.pop("fc.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError, match=r"renamed.pth.*fc.weight_renamed"):
        insightface.read(victim(), tmp_path / "renamed.pth")


def test_classifier_state_dict(tmp_path: Path) -> None:
    def net() -> TimmClassifier:
        return TimmClassifier("resnet18", num_classes=3, weights="none")

    trained = net().model.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.items()}}, tmp_path / "c.pth")
    module = SimpleNamespace(net=net())
    assert classifier.read(module, tmp_path / "c.pth").layout == "classifier_state_dict"
    assert torch.equal(module.net.model.state_dict()["fc.weight"], trained["fc.weight"])


def _pix2pix(ngf: int = 4) -> Pix2PixVictim:
    return Pix2PixVictim(
        UnetGenerator(3, 3, 5, ngf, dropout=0.0),
        PatchGANDiscriminator(6, 4, 2),
        torch.optim.Adam,
        torch.optim.Adam,
    )


def test_victim_folder_and_lightning_ckpt(tmp_path: Path) -> None:
    trained = _pix2pix()
    folder = tmp_path / "victim-from-elsewhere"
    folder.mkdir()
    target = "miabench.victims.pix2pix.Pix2PixVictim"
    atomic_write_json(
        folder / "victim.json",
        {"key": "abc", "epochs": 3, "config": {"module": {"_target_": target}}},
        checksum=True,
    )
    state = trained.state_dict()
    atomic_write(folder / "victim.pt", lambda p: torch.save(state, p), checksum=True)
    module = _pix2pix()
    info = load_checkpoint(module, folder, reader=None)
    assert info.layout == "miabench_victim" and info.details["source_epochs"] == 3
    assert torch.equal(
        module.state_dict()["generator.model.model.0.weight"],
        state["generator.model.model.0.weight"],
    )

    # another victim class's folder is refused before loading
    meta = json.loads((folder / "victim.json").read_text())
    meta["config"]["module"]["_target_"] = "miabench.victims.spade.SPADEVictim"
    atomic_write_json(folder / "victim.json", meta, checksum=True)
    with pytest.raises(CheckpointError, match=r"victim-from-elsewhere.*SPADEVictim"):
        load_checkpoint(_pix2pix(), folder, reader=None)

    ckpt = tmp_path / "epoch=4.ckpt"
    torch.save(
        {
            "pytorch-lightning_version": "2.6.0",
            "epoch": 4,
            "global_step": 40,
            "state_dict": state,
            "hyper_parameters": {**dict(trained.hparams), "lambda_l1": 10.0},
        },
        ckpt,
    )
    info = load_checkpoint(_pix2pix(), ckpt, reader=None)
    assert info.layout == "lightning" and info.details["epoch"] == 4
    assert info.details["hyper_parameters_differing"] == {
        "lambda_l1": {"file": 10.0, "config": 100.0}
    }
    # a Lightning checkpoint of another victim class
    torch.save(
        {"pytorch-lightning_version": "2.6.0", "state_dict": state, "hyper_parameters": {"lr": 1}},
        ckpt,
    )
    with pytest.raises(CheckpointError, match=r"epoch=4.ckpt: not a lightning.*another victim"):
        load_checkpoint(_pix2pix(), ckpt, reader=None)
    # a generator width that differs: the first wrongly-shaped keys are named
    wide = tmp_path / "wide.ckpt"
    torch.save({"pytorch-lightning_version": "2.6.0", "state_dict": _pix2pix(8).state_dict()}, wide)
    with pytest.raises(CheckpointError, match=r"wrongly-shaped keys: .*\(8, 3, 4, 4\)"):
        load_checkpoint(_pix2pix(), wide, reader=None)
