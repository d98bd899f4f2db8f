"""miabench.rescore: a run's metrics recomputed from its scores.csv equal the attack stage's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from miabench.pipeline.record import held_out_metrics
from miabench.rescore import RescoreError, main, rescore_result


def _run(tmp_path: Path, seed: int = 3) -> tuple[Path, dict]:
    """A finished run as the attack stage leaves it: scores.csv and results.json."""
    rng = np.random.default_rng(seed)
    n_members, n_nonmembers = 60, 140
    labels = np.r_[np.ones(n_members, int), np.zeros(n_nonmembers, int)]
    score = rng.normal(size=labels.size) + 1.2 * labels
    split = np.where(rng.random(labels.size) < 0.5, "calibration", "test")
    frame = pd.DataFrame(
        {
            "sample_id": [f"s{i:04d}" for i in range(labels.size)],
            "role": np.where(labels == 1, "member", "nonmember"),
            "label": labels,
            "split": split,
            "loss.score": score,
        }
    )
    run_dir = tmp_path / "runs" / "v-d-none-s3"
    run_dir.mkdir(parents=True)
    frame.to_csv(run_dir / "scores.csv", index=False)
    cfg = OmegaConf.create(
        {"seed": seed, "evaluation": {"fprs": [0.1, 0.01], "bootstrap": 200, "ci_level": 0.95}}
    )
    metrics = held_out_metrics(cfg, score, labels, split == "calibration")
    metrics["describe"] = {"name": "loss"}
    result = {"run": {"victim": "v", "dataset": "d", "seed": seed}, "attacks": {"loss": metrics}}
    path = run_dir / "results.json"
    path.write_text(json.dumps(result))
    return path, metrics


def test_rescore_recovers_the_attack_stage_metrics(tmp_path: Path) -> None:
    path, truth = _run(tmp_path)
    damaged = json.loads(path.read_text())
    damaged["attacks"]["loss"]["auc"] = 0.1
    damaged["attacks"]["loss"]["auc_ci95"] = [0.0, 0.2]
    path.write_text(json.dumps(damaged))

    assert main([str(path.parent.parent)]) == 0

    result = json.loads(path.read_text())
    got = result["attacks"]["loss"]
    assert got["auc"] == pytest.approx(truth["auc"])
    assert got["auc_ci95"] == pytest.approx(truth["auc_ci95"])
    assert got["describe"] == {"name": "loss"}
    assert result["run"]["rescored"]["command"] == "python -m miabench.rescore"


def test_check_writes_nothing(tmp_path: Path) -> None:
    path, _ = _run(tmp_path)
    damaged = json.loads(path.read_text())
    damaged["attacks"]["loss"]["auc"] = 0.1
    path.write_text(json.dumps(damaged))
    assert main(["--check", str(path)]) == 0
    assert json.loads(path.read_text())["attacks"]["loss"]["auc"] == 0.1


def test_refuses_what_it_cannot_rescore(tmp_path: Path) -> None:
    path, _ = _run(tmp_path)
    (path.parent / "scores.csv").unlink()
    with pytest.raises(RescoreError, match="no scores.csv"):
        rescore_result(path)
    reference = tmp_path / "ref" / "results.json"
    reference.parent.mkdir()
    reference.write_text(json.dumps({"run": {}, "attacks": {}, "leave_one_out": {}}))
    with pytest.raises(RescoreError, match="reference-model run"):
        rescore_result(reference)
    assert main([str(tmp_path / "nowhere")]) == 1
