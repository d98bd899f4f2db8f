"""Pipeline hooks that later victims, defenses and attacks plug into.

- trainable attacks are fitted on the calibration half only, then score every sample;
- a defense's ``attacker_view`` changes what attacks see, not the utility on raw outputs,
  and does not retrain the victim;
- dataset-level utility metrics (torchmetrics) are accumulated per role into results.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torchmetrics import MeanMetric

from miabench.attacks.base import Attack
from miabench.pipeline.attack import run_attack
from miabench.pipeline.train import train_victim
from miabench.victims.pix2pix import Pix2PixVictim
from tests.conftest import compose_cfg
from tests.pipeline.test_end_to_end import tiny_overrides

#: what the recording attack saw when fitted, by test
SEEN: dict[str, Any] = {}


class RecordingAttack(Attack):
    """Learns the mean output brightness of members vs non-members; records its fit data."""

    requires = ("output",)
    trainable = True

    def fit(self, batches: Any) -> None:
        ids, labels, means = [], [], {0: [], 1: []}
        for _ in range(2):  # two passes, as a learner may take
            ids, labels = [], []
            for signals, y in batches():
                ids += signals["sample_id"]
                labels += y.tolist()
                for m, label in zip(signals["output"].mean((1, 2, 3)), y.tolist(), strict=True):
                    means[int(label)].append(float(m))
        SEEN["fit_ids"], SEEN["fit_labels"] = ids, labels
        self.member_mean = sum(means[1]) / len(means[1])

    def score(self, signals: Any) -> dict[str, torch.Tensor]:
        SEEN.setdefault("max_output", []).append(float(signals["output"].max()))
        return {"score": -(signals["output"].mean((1, 2, 3)) - self.member_mean).abs()}


def halve(signals: dict[str, Any]) -> dict[str, Any]:
    """An attacker view for the test: the attacker only sees outputs scaled into [0, 0.5]."""
    return {**signals, "output": signals["output"] * 0.5}


class MeanOutputVictim(Pix2PixVictim):
    """pix2pix with a dataset-level metric: the mean output value over a role."""

    def utility_metrics(self) -> dict[str, Any]:
        return {"mean_output": MeanMetric()}

    def update_utility_metrics(self, metrics: dict[str, Any], signals: dict[str, Any]) -> None:
        metrics["mean_output"].update(signals["output"].mean((1, 2, 3)))


def test_trainable_attack_view_and_dataset_metrics(aligned_root: Path, tmp_path: Path) -> None:
    attack = {
        "attack": {"recording": {"_target_": f"{__name__}.RecordingAttack"}},
    }
    base = tiny_overrides(aligned_root, tmp_path, "trainer.max_epochs=1")
    cfg = compose_cfg("run_attack", [*base, f"victim.module._target_={__name__}.MeanOutputVictim"])
    cfg.attack = attack["attack"]
    victim = train_victim(cfg)
    results = json.loads(run_attack(cfg, victim).read_text())
    scores = pd.read_csv(Path(run_attack(cfg, victim)).parent / "scores.csv")

    calibration = scores[scores.split == "calibration"]
    assert sorted(SEEN["fit_ids"]) == sorted(calibration.sample_id)
    assert SEEN["fit_labels"] == [
        float(calibration.set_index("sample_id").label[i]) for i in SEEN["fit_ids"]
    ]
    assert set(SEEN["fit_labels"]) == {0.0, 1.0}
    # streamed in a seeded random order, not manifest order (a "first N" learner must not
    # get the first few identities), the same on every pass
    members = [i for i, y in zip(SEEN["fit_ids"], SEEN["fit_labels"], strict=True) if y == 1.0]
    assert members != sorted(members)
    assert scores["recording.score"].notna().all()  # every sample scored, calibration included
    assert results["attacks"]["recording"]["n_test"] == int((scores.split == "test").sum())

    for role in ("member", "nonmember"):
        mean_output = results["utility"][role]["mean_output"]
        assert 0.0 <= mean_output <= 1.0
    assert "mean_output" in results["generalization_gap"]

    # The same victim under an output-truncating view: no retraining, attacks see the view,
    # utility stays on the raw outputs.
    SEEN.clear()
    viewed = compose_cfg(
        "run_attack",
        [
            *base,
            f"victim.module._target_={__name__}.MeanOutputVictim",
            "defense.name=halved",
            f"+defense.attacker_view._target_={__name__}.halve",
            "+defense.attacker_view._partial_=true",
        ],
    )
    viewed.attack = attack["attack"]
    viewed_victim = train_victim(viewed)
    assert viewed_victim.directory == victim.directory
    viewed_results = json.loads(run_attack(viewed, viewed_victim).read_text())
    assert max(SEEN["max_output"]) <= 0.5
    assert viewed_results["utility"] == results["utility"]
    assert viewed_results["run"]["attacker_view"]["_target_"].endswith("halve")
    assert viewed_results["run"]["defense"] == "halved"
