"""The anonymization audit table (results/anonymization_audit.py) on synthetic runs: one row
per victim and defense, each kind's strongest attack, the gap and role means, the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from miabench.metrics.bootstrap import roc_intervals
from miabench.metrics.roc import evaluate_scores
from miabench.results.anonymization_audit import write_anonymization_audit

N = 80
KINDS = {"threshold": ["detection_loss", "confidence_max"], "label_only": ["label_only"]}


def _write(folder: Path, victim: str, defense: str, seed: int, scores: dict) -> None:
    labels = np.r_[np.ones(N // 2, dtype=int), np.zeros(N // 2, dtype=int)]
    ids = [f"img{i:03d}" for i in range(N)]
    role = np.where(labels == 1, "member", "nonmember")
    split = np.where(np.arange(N) % 2 == 0, "calibration", "test")
    test = split == "test"
    attacks = {}
    for name, score in scores.items():
        metrics = evaluate_scores(score, labels, ~test)
        metrics.update(roc_intervals(score[test], labels[test], n_boot=50, seed=seed))
        attacks[name] = {**metrics, "describe": {}}
    result = {
        "run": {
            "victim": victim,
            "dataset": "faces",
            "data_name": "faces",
            "defense": defense,
            "seed": seed,
        },
        "utility": {
            "member": {"loss": 0.5, "map_50": 0.9},
            "nonmember": {"loss": 1.5, "map_50": 0.6},
        },
        "generalization_gap": {"loss": 1.0},
        "attacks": attacks,
    }
    folder.mkdir(parents=True)
    columns = {f"{k}.score": v for k, v in scores.items()}
    frame = pd.DataFrame(
        {"sample_id": ids, "role": role, "label": labels, "split": split, **columns}
    )
    frame.to_csv(folder / "scores.csv", index=False)
    pd.DataFrame({"sample_id": ids, "role": role, "loss": np.where(labels == 1, 0.5, 1.5)}).to_csv(
        folder / "utility.csv", index=False
    )
    (folder / "results.json").write_text(json.dumps(result))


def test_audit_rows_victim_by_defense_with_strongest_attack_per_kind(tmp_path: Path) -> None:
    labels = np.r_[np.ones(N // 2), np.zeros(N // 2)]
    for seed in range(2):
        rng = np.random.default_rng(seed)
        loss = rng.normal(size=N) + 2.0 * labels  # the strongest threshold attack
        confidence = rng.normal(size=N) + 0.5 * labels + 3.0
        label_only = rng.normal(size=N) + 1.0 * labels
        all_three = {"detection_loss": loss, "confidence_max": confidence, "label_only": label_only}
        for victim in ("ssdlite", "retinanet"):
            _write(tmp_path / f"{victim}-none-{seed}", victim, "none", seed, all_three)
            # boxes only: no loss attack
            boxes = {"confidence_max": confidence, "label_only": label_only}
            _write(tmp_path / f"{victim}-boxes-{seed}", victim, "output_boxes", seed, boxes)
    table = {
        "name": "audit",
        "title": "Audit",
        "out_dir": str(tmp_path / "out"),
        "command": "python -m miabench.benchmark ...",
        "kinds": KINDS,
        "confidence": "confidence_max",
        "utility": {"metrics": ["map_50"], "plot": "map_50"},
    }
    md, csv = write_anonymization_audit(table, sorted(tmp_path.glob("*/results.json")))
    frame = pd.read_csv(csv)
    assert len(frame) == 4
    assert sorted(frame.victim.unique()) == ["retinanet/faces", "ssdlite/faces"]
    none = frame[(frame.victim == "ssdlite/faces") & (frame.defense == "none")].iloc[0]
    boxes = frame[(frame.victim == "ssdlite/faces") & (frame.defense == "output_boxes")].iloc[0]
    assert none.strongest_threshold_attack == "detection_loss"
    assert boxes.strongest_threshold_attack == "confidence_max"  # the loss attack did not run there
    assert none.strongest_label_only_attack == "label_only"
    # the kind's AUC is its attack's own mean AUC over the seeds
    assert none.strongest_threshold_auc == pytest.approx(none.detection_loss_auc)
    assert (
        none.strongest_label_only_auc_lo
        <= none.strongest_label_only_auc
        <= none.strongest_label_only_auc_hi
    )
    assert 0 < none.strongest_threshold_accuracy < 1 and "strongest_threshold_recall" in frame
    assert "strongest_label_only_auc_vs_none" in frame
    assert pd.isna(none.get("strongest_label_only_auc_vs_none"))
    assert not pd.isna(boxes.strongest_label_only_auc_vs_none)
    assert none.generalization_gap_loss == 1.0 and none.member_mean_loss == 0.5
    # the confidence attack's mean score per role, averaged over the seeds
    mean_conf = np.mean(
        [pd.read_csv(tmp_path / f"ssdlite-none-{s}" / "scores.csv")
         .query("role == 'member'")["confidence_max.score"].mean() for s in range(2)]
    )  # fmt: skip
    assert none.member_mean_confidence == pytest.approx(mean_conf)
    assert none.member_mean_confidence > none.nonmember_mean_confidence
    assert none.nonmember_map_50 == pytest.approx(0.6)
    assert (tmp_path / "out" / "audit_ssdlite_faces.png").exists()
    text = md.read_text()
    assert "strongest_threshold_attack" in text and "strongest_label_only_auc" in text
    # a sanity check of the synthetic strengths
    assert roc_auc_score(labels, np.r_[np.ones(N // 2) * 2, np.zeros(N // 2)]) == 1.0


def test_audit_without_results_names_the_table(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="audit"):
        write_anonymization_audit({"name": "audit", "out_dir": str(tmp_path)}, [])
