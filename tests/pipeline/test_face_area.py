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
            "data.datamodule.prepare.n_train=24",
            "data.datamodule.prepare.n_val=2",
            "data.batch_size=4",
            "data.eval_batch_size=12",
            "split.n_members=12",
            "split.n_nonmembers=12",
            "victim.module.net.options.encoder_depth=3",
            "victim.module.net.options.decoder_channels=[16,8,8]",
            "victim.module.optimizer.lr=3e-3",
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
    overfit = _run(tmp_path / "overfit", 40)
    assert overfit["run"]["victim"] == "unet"
    assert overfit["run"]["victim_info"]["architecture"] == "Unet"
    assert overfit["generalization_gap"]["loss"] > 0
    attacks = overfit["attacks"]
    # twelve memorised composites vs twelve unseen (six of each tested): the loss's interval
    # clears chance, every attack is well above it
    low, high = attacks["reconstruction"]["auc_ci95"]
    assert attacks["reconstruction"]["auc"] > 0.8 and low > 0.5, attacks["reconstruction"]
    for attack in ATTACKS:
        assert attacks[attack]["auc"] > 0.75, (attack, attacks[attack]["auc"])
        assert attacks[attack]["n_test_members"] == attacks[attack]["n_test_nonmembers"] == 6
    # a binary segmenter's utility: Dice and IoU of the face area
    assert 0.0 <= overfit["utility"]["nonmember"]["dataset_dice"] <= 1.0

    # (the membership error is left out here: its feature regression is the slow part)
    untrained = _run(tmp_path / "untrained", 0, "~attack.membership_error")
    assert untrained["run"]["victim"] == "unet"
    for attack in ("reconstruction", "confidence"):
        result = untrained["attacks"][attack]
        low, high = result["auc_ci95"]
        # nothing was learnt from the members: chance lies inside the interval
        assert low < 0.5 < high, (attack, result["auc"], low, high)
