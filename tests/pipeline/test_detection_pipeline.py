"""The embedded face-detection experiment through the three stages, at tiny sizes: an
overfit detector's own loss separates members from non-members."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from miabench.pipeline.attack import run_attack
from miabench.pipeline.table import make_table
from miabench.pipeline.train import train_victim
from tests.conftest import compose_cfg

ATTACKS = ("detection_loss", "confidence_max", "confidence_topk", "confidence_count", "box_error")


def tiny_detection(out: Path, *extra: str) -> list[str]:
    return [
        "experiment=embedded/detection_ssdlite",
        f"paths.root_dir={out}",
        "data.image_size=64",
        "data.datamodule.prepare.n_train=48",
        "data.datamodule.prepare.n_val=2",
        "data.datamodule.prepare.face_size=[12,24]",
        "data.batch_size=4",
        "split.n_members=12",
        "split.n_nonmembers=36",
        "victim.module.detector.width_mult=0.5",
        "trainer.max_epochs=80",
        "trainer.enable_progress_bar=false",
        "evaluation.device=cpu",
        *extra,
    ]


@pytest.mark.slow
def test_overfit_detector_loss_attack(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = compose_cfg("run_attack", tiny_detection(out))
    victim = train_victim(cfg)
    results_path = run_attack(cfg, victim)
    results = json.loads(results_path.read_text())

    assert set(results["attacks"]) == set(ATTACKS)
    # 12 memorised composites vs 36 unseen ones: the detector's own loss separates them
    assert results["attacks"]["detection_loss"]["auc"] > 0.8, results["attacks"]
    for name in ATTACKS:
        assert 0.0 <= results["attacks"][name]["auc"] <= 1.0
    utility = results["utility"]
    for role in ("member", "nonmember"):
        assert 0.0 <= utility[role]["map"] <= utility[role]["map_50"] <= 1.0
    assert utility["member"]["map_50"] > utility["nonmember"]["map_50"]
    assert results["generalization_gap"]["loss"] > 0
    assert results["run"]["victim_info"]["weights"] == "none"

    scores = pd.read_csv(results_path.parent / "scores.csv")
    assert len(scores) == 48
    # the loss attack's score is the negated sum of the detector's loss terms
    terms = scores["detection_loss.classification"] + scores["detection_loss.bbox_regression"]
    assert (terms + scores["detection_loss.score"]).abs().max() < 1e-5

    table_cfg = compose_cfg(
        "make_table",
        [f"paths.root_dir={out}", "table=embedded_detection", f"table.results=[{results_path}]"],
    )
    md_path, csv_path = make_table(table_cfg)
    table = pd.read_csv(csv_path)
    assert md_path.parent == out / "results" / "embedded_detection"
    assert len(table) == 1 and table.victim[0] == "ssdlite"
    assert table.detection_loss_auc_measured[0] == pytest.approx(
        results["attacks"]["detection_loss"]["auc"]
    )
    assert table.nonmember_map_50[0] == pytest.approx(utility["nonmember"]["map_50"])
    assert not any(c.endswith(("_published", "_delta")) for c in table.columns)
