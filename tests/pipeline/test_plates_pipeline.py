"""The embedded license-plate experiment through the pipeline, at tiny sizes: an overfit
plate localizer's own loss separates members from non-members (the AUC's interval above
chance), and the same detector never trained does not (its interval holds 0.5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miabench.pipeline.attack import run_attack
from miabench.pipeline.train import train_victim
from tests.conftest import compose_cfg

ATTACKS = ("detection_loss", "confidence_max", "confidence_topk", "confidence_count", "box_error")


def tiny_plates(out: Path, epochs: int, n_nonmembers: int) -> list[str]:
    return [
        "experiment=embedded/plates_ssdlite",
        f"paths.root_dir={out}",
        "data.image_size=64",
        "data.datamodule.prepare.n_train=48",
        "data.datamodule.prepare.n_val=2",
        "data.datamodule.prepare.plate_width=[20,30]",
        "data.batch_size=4",
        "split.n_members=12",
        f"split.n_nonmembers={n_nonmembers}",
        "victim.module.detector.width_mult=0.5",
        f"trainer.max_epochs={epochs}",
        "trainer.enable_progress_bar=false",
        "evaluation.device=cpu",
    ]


def _attack(out: Path, epochs: int, n_nonmembers: int) -> dict:
    cfg = compose_cfg("run_attack", tiny_plates(out, epochs, n_nonmembers))
    return json.loads(run_attack(cfg, train_victim(cfg)).read_text())


@pytest.mark.slow
def test_overfit_plate_localizer_is_attacked_an_untrained_one_is_not(tmp_path: Path) -> None:
    # training dominates the time: the overfit run audits 12 non-members only
    overfit = _attack(tmp_path, epochs=80, n_nonmembers=12)
    assert set(overfit["attacks"]) == set(ATTACKS)
    assert overfit["run"]["victim_info"]["class_name"] == "plate"
    loss = overfit["attacks"]["detection_loss"]
    # 6 memorised test members vs 6 unseen test non-members: the interval is above chance
    assert (loss["n_test_members"], loss["n_test_nonmembers"]) == (6, 6)
    assert loss["auc"] > 0.8 and loss["auc_ci95"][0] > 0.5, loss
    assert overfit["generalization_gap"]["loss"] > 0

    # the same data, never trained (signals only, so more non-members): chance
    untrained = _attack(tmp_path, epochs=0, n_nonmembers=36)
    loss = untrained["attacks"]["detection_loss"]
    assert (loss["n_test_members"], loss["n_test_nonmembers"]) == (6, 18)
    assert loss["auc_ci95"][0] < 0.5 < loss["auc_ci95"][1], loss
    assert abs(loss["auc"] - 0.5) < 0.2, loss
