"""A tiny binary face-area U-Net through the stages on the embedded face-area composites: an
overfit one is detected well above chance by the loss, the dense membership error and the
confidence, a never-trained one is not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from miabench.pipeline.attack import run_attack
from miabench.pipeline.train import train_victim
from tests.conftest import compose_cfg

ATTACKS = ("reconstruction", "membership_error", "confidence", "confidence_true_class")


def _run(out: Path, epochs: int, *extra: str) -> dict[str, Any]:
    cfg = compose_cfg(
        "run_attack",
        [
            "experiment=embedded/face_area_unet",
            f"paths.root_dir={out}",
            "data.image_size=32",
            "data.datamodule.prepare.face_size=[12,20]",
            "data.datamodule.prepare.n_train=20",
            "data.datamodule.prepare.n_val=2",
            "data.batch_size=4",
            "data.eval_batch_size=10",
            "split.n_members=10",
            "split.n_nonmembers=10",
            "victim.module.net.options.encoder_depth=3",
            "victim.module.net.options.decoder_channels=[16,8,8]",
            f"trainer.max_epochs={epochs}",
            "trainer.enable_progress_bar=false",
            "attack.membership_error.arch=resnet18",
            "attack.membership_error.feature_size=16",
            "evaluation.device=cpu",
            *extra,
        ],
    )
    return json.loads(run_attack(cfg, train_victim(cfg)).read_text())


@pytest.mark.slow
def test_overfit_face_area_unet_is_detected_and_untrained_is_not(tmp_path: Path) -> None:
    overfit = _run(tmp_path / "overfit", epochs=30)
    assert overfit["run"]["victim"] == "unet"
    assert overfit["run"]["victim_info"]["arch"] == "Unet"
    assert overfit["generalization_gap"]["loss"] > 0
    for attack in ATTACKS:
        result = overfit["attacks"][attack]
        low, high = result["auc_ci95"]
        # eight memorised composites vs twenty unseen: the interval clears chance
        assert result["auc"] > 0.8 and low > 0.5, (attack, result["auc"], low, high)
    # a binary segmenter's utility: Dice and IoU of the face area
    assert 0.0 <= overfit["utility"]["nonmember"]["dataset_dice"] <= 1.0

    # (the membership error is left out here: its feature regression is the slow part)
    untrained = _run(tmp_path / "untrained", 0, "~attack.membership_error")
    for attack in ("reconstruction", "confidence"):
        result = untrained["attacks"][attack]
        low, high = result["auc_ci95"]
        # nothing was learnt from the members: chance lies inside the interval
        assert low < 0.5 < high, (attack, result["auc"], low, high)
