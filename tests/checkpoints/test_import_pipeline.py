"""``victim.checkpoint``: the attack stage imports an authors' pix2pix file and never trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from miabench.checkpoints.base import CheckpointError, file_sha256
from miabench.pipeline import train as train_stage
from miabench.pipeline.attack import run_attack
from miabench.pipeline.table import imported_notes
from miabench.victims.nets.unet import UnetGenerator
from tests.checkpoints.authors_unet import randomize
from tests.conftest import compose_cfg
from tests.pipeline.test_end_to_end import tiny_overrides


@pytest.mark.slow
def test_run_attack_on_an_imported_pix2pix_without_training(
    aligned_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = tmp_path / "released" / "latest_net_G.pth"
    released.parent.mkdir()
    torch.save(randomize(UnetGenerator(3, 3, 5, 16, dropout=0.0)), released)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("an imported victim must not be trained")

    monkeypatch.setattr(train_stage, "_train", no_training)
    overrides = tiny_overrides(
        aligned_root, tmp_path / "out", f"victim.checkpoint={released}", "split.n_nonmembers=8"
    )
    results = json.loads(run_attack(compose_cfg("run_attack", overrides)).read_text())
    run = results["run"]
    checkpoint = run["provenance"]["checkpoint"]
    assert checkpoint["sha256"] == file_sha256(released) and checkpoint["layout"] == "pix2pix"
    assert checkpoint["path"] == str(released)
    assert run["victim_weights"].startswith("imported pix2pix sha256:")
    assert "train" not in run["provenance"]["stages"]  # no training stage at all
    assert "import" in run["provenance"]["stages"]
    assert "membership_error" in results["attacks"]
    victim_dir = Path(run["victim_dir"])
    assert json.loads((victim_dir / "victim.json").read_text())["imported"] is True
    assert not (victim_dir / "checkpoints").exists()
    assert imported_notes([results]) == [
        f"Victim weights imported (not trained here): pix2pix on {run['dataset']}: "
        f"{run['victim_weights']}"
    ]

    # a file with one key renamed fails before the data is even looked at
    bad = torch.load(released, weights_only=True)
    bad["model.model.0.weight_x"] = bad.pop("model.model.0.weight")
    torch.save(bad, tmp_path / "bad_net_G.pth")
    overrides = tiny_overrides(
        tmp_path / "no-data-here",
        tmp_path / "out",
        f"victim.checkpoint={tmp_path / 'bad_net_G.pth'}",
    )
    with pytest.raises(
        CheckpointError, match=r"bad_net_G.pth: not a pix2pix.*model.model.0.weight_x"
    ):
        run_attack(compose_cfg("run_attack", overrides))


@pytest.mark.slow
def test_run_attack_on_an_imported_detector_from_the_reference_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployed detector as torchvision's detection reference script saves it
    (``{'model', 'args': Namespace, 'epoch'}``): imported, attacked, never trained."""
    import argparse

    from hydra.utils import instantiate

    from tests.pipeline.test_detection_pipeline import tiny_detection

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("an imported victim must not be trained")

    monkeypatch.setattr(train_stage, "_train", no_training)
    base = [*tiny_detection(tmp_path / "out"), "split.n_members=8", "split.n_nonmembers=8"]
    torch.manual_seed(0)
    detector = instantiate(compose_cfg("run_attack", base).victim.module).detector
    released = tmp_path / "released" / "model_25.pth"
    released.parent.mkdir()
    args = argparse.Namespace(model="ssdlite320_mobilenet_v3_large", epochs=26, lr=0.15)
    torch.save({"model": detector.state_dict(), "args": args, "epoch": 25}, released)

    cfg = compose_cfg("run_attack", [*base, f"victim.checkpoint={released}"])
    results = json.loads(run_attack(cfg).read_text())
    checkpoint = results["run"]["provenance"]["checkpoint"]
    assert checkpoint["sha256"] == file_sha256(released)
    assert checkpoint["layout"] == "torchvision_detection_reference"
    assert checkpoint["details"]["epoch"] == 25  # what the reference script recorded
    assert "train" not in results["run"]["provenance"]["stages"]
    assert "detection_loss" in results["attacks"]
    assert results["attacks"]["detection_loss"]["n_test_members"] > 0


@pytest.mark.slow
def test_run_attack_on_an_imported_face_area_segmenter_saved_by_smp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A face-area segmenter saved with smp's ``save_pretrained`` (config.json +
    model.safetensors): imported, attacked with the dense membership error, never trained."""
    from hydra.utils import instantiate

    from miabench.checkpoints.segmentation import net_of

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("an imported victim must not be trained")

    monkeypatch.setattr(train_stage, "_train", no_training)
    base = [
        "experiment=embedded/face_area_unet",
        f"paths.root_dir={tmp_path / 'out'}",
        "data.image_size=32",
        "data.datamodule.prepare.face_size=[12,20]",
        "data.datamodule.prepare.n_train=16",
        "data.datamodule.prepare.n_val=2",
        "split.n_members=8",
        "split.n_nonmembers=8",
        "victim.module.net.options.encoder_depth=3",
        "victim.module.net.options.decoder_channels=[16,8,8]",
        "attack.membership_error.arch=resnet18",
        "attack.membership_error.weights=none",
        "attack.membership_error.feature_size=16",
        "evaluation.device=cpu",
    ]
    torch.manual_seed(0)
    net = net_of(instantiate(compose_cfg("run_attack", base).victim.module))
    released = tmp_path / "released"
    net.model.save_pretrained(str(released))

    cfg = compose_cfg("run_attack", [*base, f"victim.checkpoint={released}"])
    results = json.loads(run_attack(cfg).read_text())
    checkpoint = results["run"]["provenance"]["checkpoint"]
    assert checkpoint["layout"] == "smp_pretrained" and checkpoint["sha256"] == file_sha256(
        released
    )
    assert "train" not in results["run"]["provenance"]["stages"]
    assert "membership_error" in results["attacks"]
