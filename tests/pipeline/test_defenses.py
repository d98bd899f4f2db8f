"""Defenses through the pipeline's configs: the defense report reaches results.json, a DP
victim (BatchNorm fixed) is loaded back for the attacks, truncation changes only the
attacker's view, an inapplicable defense fails clearly, and the comparison table is built."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from opacus.accountants import RDPAccountant

from miabench.defenses.base import DefenseNotApplicable
from miabench.pipeline.attack import run_attack
from miabench.pipeline.train import train_victim
from miabench.results.privacy_utility import write_privacy_utility
from tests.conftest import compose_cfg
from tests.pipeline.test_end_to_end import tiny_overrides


def _run(root: Path, out: Path, *overrides: str) -> tuple[dict, Path]:
    cfg = compose_cfg("run_attack", tiny_overrides(root, out, "trainer.max_epochs=2", *overrides))
    cfg.attack = {"reconstruction": cfg.attack.reconstruction}
    victim = train_victim(cfg)
    path = run_attack(cfg, victim)
    return json.loads(path.read_text()), victim.directory


@pytest.mark.slow
def test_defenses_through_the_pipeline(aligned_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    none, none_dir = _run(aligned_root, out, "defense=none")
    truncated, truncated_dir = _run(
        aligned_root, out, "defense=output_truncation", "defense.attacker_view.levels=2"
    )
    assert truncated_dir == none_dir  # post-hoc: the undefended victim is reused
    assert truncated["utility"] == none["utility"]  # utility on raw outputs
    assert truncated["attacks"]["reconstruction"] != none["attacks"]["reconstruction"]

    dp, dp_dir = _run(aligned_root, out, "defense=dpsgd", "defense.training.noise_multiplier=2.0")
    assert dp_dir != none_dir
    report = dp["run"]["defense_report"]
    assert json.loads((dp_dir / "victim.json").read_text())["defense"] == report
    accountant = RDPAccountant()
    accountant.history = [(2.0 / 2**0.5, report["sample_rate"], report["steps"])]
    assert report["epsilon"] == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
    assert report["steps"] == 2 * 2  # 8 members, batch 4, 2 epochs
    assert any("GroupNorm" in f for f in report["module_fixes"]["generator"])

    wd, _ = _run(aligned_root, out, "defense=weight_decay", "defense.training.value=0.1")
    assert wd["run"]["defense_report"]["weight_decay"] == 0.1

    paths = sorted((out / "outputs" / "attacks").glob("*/results.json"))
    md, csv = write_privacy_utility(
        {"name": "t", "title": "T", "out_dir": str(tmp_path / "table"), "command": "c"}, paths
    )
    frame = pd.read_csv(csv)
    assert list(frame.defense) == ["none", "dpsgd", "output_truncation", "weight_decay"]
    row = frame.set_index("defense")
    assert row.loc["dpsgd", "epsilon"] == pytest.approx(report["epsilon"])
    assert pd.isna(row.loc["none", "epsilon"])
    assert row.loc["none", "reconstruction_auc"] == pytest.approx(
        none["attacks"]["reconstruction"]["auc"]
    )
    assert row.loc["none", "nonmember_psnr"] == pytest.approx(none["utility"]["nonmember"]["psnr"])
    assert (tmp_path / "table" / "t.png").stat().st_size > 0 and md.exists()


def test_inapplicable_defense_fails_clearly(aligned_root: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "run_attack", tiny_overrides(aligned_root, tmp_path, "defense=label_smoothing")
    )
    with pytest.raises(DefenseNotApplicable, match="label_smoothing"):
        train_victim(cfg)


def test_privacy_utility_table_refuses_results_without_defense(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps({"run": {"victim": "v", "dataset": "d"}, "attacks": {}}))
    with pytest.raises(ValueError, match="no run.defense"):
        write_privacy_utility({"name": "t", "title": "T", "out_dir": str(tmp_path)}, [bad])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError):
        write_privacy_utility({"name": "t", "title": "T", "out_dir": str(tmp_path)}, [broken])
