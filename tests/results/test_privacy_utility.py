"""Privacy–utility table: every seed kept, defenses compared with `none` by paired bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from miabench.metrics.bootstrap import roc_intervals
from miabench.metrics.roc import evaluate_scores
from miabench.results.privacy_utility import privacy_utility_frame, write_privacy_utility
from miabench.results.table import collect_results

N = 300  # 150 members + 150 non-members, half of each in the test half


def _write(folder: Path, defense: str, seed: int, score: np.ndarray, psnr: np.ndarray) -> None:
    labels = np.r_[np.ones(N // 2, dtype=int), np.zeros(N // 2, dtype=int)]
    ids = [f"img{i:03d}.png" for i in range(N)]
    role = np.where(labels == 1, "member", "nonmember")
    split = np.where(np.arange(N) % 2 == 0, "calibration", "test")
    test = split == "test"
    metrics = evaluate_scores(score, labels, ~test)
    metrics.update(roc_intervals(score[test], labels[test], n_boot=200, seed=seed))
    result = {
        "run": {"victim": "pix2pix", "dataset": "d", "defense": defense, "seed": seed},
        "utility": {"nonmember": {"psnr": float(psnr[labels == 0].mean())}},
        "attacks": {"reconstruction": {**metrics, "describe": {}}},
    }
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "sample_id": ids,
            "role": role,
            "label": labels,
            "split": split,
            "reconstruction.score": score,
        }
    ).to_csv(folder / "scores.csv", index=False)
    pd.DataFrame({"sample_id": ids, "role": role, "psnr": psnr}).to_csv(
        folder / "utility.csv", index=False
    )
    (folder / "results.json").write_text(json.dumps(result))


@pytest.fixture
def comparison(tmp_path: Path) -> list[Path]:
    labels = np.r_[np.ones(N // 2), np.zeros(N // 2)]
    for seed in range(3):
        rng = np.random.default_rng(seed)
        score = rng.normal(size=N) + 1.5 * labels
        psnr = rng.normal(20, 2, size=N)
        _write(tmp_path / f"none{seed}", "none", seed, score, psnr)
        # a "defense" that changes nothing: same scores, same utility
        _write(tmp_path / f"same{seed}", "identical", seed, score, psnr)
        # a defense that blinds the attack and costs a little utility on the same images
        blind = rng.normal(size=N)
        _write(tmp_path / f"dp{seed}", "dpsgd", seed, blind, psnr - 1 + rng.normal(0, 0.3, N))
    return sorted(tmp_path.glob("*/results.json"))


def test_paired_differences_with_none(comparison: list[Path]) -> None:
    results = collect_results(comparison)
    frame = privacy_utility_frame(results, utility=("psnr",)).set_index("defense")
    assert list(frame.index) == ["none", "dpsgd", "identical"]
    assert (frame.n_seeds == 3).all() and (frame.seeds == "0,1,2").all()
    assert frame.n_test_members.tolist() == [75] * 3

    same = frame.loc["identical"]
    assert same["reconstruction_auc_vs_none"] == 0 and not same["reconstruction_auc_vs_none_sig"]
    assert same["reconstruction_auc_vs_none_lo"] == same["reconstruction_auc_vs_none_hi"] == 0
    assert same["nonmember_psnr_vs_none"] == 0 and not same["nonmember_psnr_vs_none_sig"]

    dp, none = frame.loc["dpsgd"], frame.loc["none"]
    assert dp["reconstruction_auc_vs_none"] == pytest.approx(
        dp["reconstruction_auc"] - none["reconstruction_auc"]
    )
    assert dp["reconstruction_auc_vs_none_sig"] and dp["reconstruction_auc_vs_none_hi"] < 0
    # 75 test non-members cannot resolve 1 % FPR: no difference claimed either way
    assert pd.isna(dp["reconstruction_tpr_at_1pct_fpr_vs_none"])
    assert not dp["reconstruction_tpr_at_1pct_fpr_vs_none_sig"]
    assert "75 test non-members < 100" in dp["reconstruction_tpr_at_1pct_fpr_vs_none_note"]
    assert dp["nonmember_psnr_vs_none_sig"] and dp["nonmember_psnr_vs_none_hi"] < 0
    assert dp["nonmember_psnr_vs_none"] == pytest.approx(
        dp["nonmember_psnr"] - none["nonmember_psnr"]
    )

    per_seed = privacy_utility_frame(results, utility=("psnr",), per_seed=True)
    assert len(per_seed) == 9 and list(per_seed.defense[:3]) == ["none"] * 3
    one = per_seed[(per_seed.defense == "dpsgd") & (per_seed.seeds == "1")].iloc[0]
    assert one["n_seeds"] == 1 and one["reconstruction_auc_vs_none"] < 0


def test_written_table_marks_significant_differences(comparison: list[Path], tmp_path: Path):
    out = tmp_path / "table"
    table = {"name": "t", "title": "T", "out_dir": str(out), "command": "c"}
    md, csv = write_privacy_utility({**table, "utility": {"metrics": ["psnr"]}}, comparison)
    text = md.read_text(encoding="utf-8")
    dp = next(line for line in text.splitlines() if line.startswith("| dpsgd"))
    same = next(line for line in text.splitlines() if line.startswith("| identical"))
    assert "]*" in dp and "*" not in same and "| n/o |" in dp
    assert "0.000 ± 0.000 [0.000, 0.000] |" in same
    assert len(pd.read_csv(out / "t_per_seed.csv")) == 9 and (out / "t.png").stat().st_size
    assert "reconstruction_auc_vs_none_lo" in pd.read_csv(csv).columns


def test_mismatched_test_samples_are_refused(comparison: list[Path], tmp_path: Path) -> None:
    scores = comparison[0].parent / "scores.csv"  # dp0
    frame = pd.read_csv(scores)
    frame["sample_id"] = "other_" + frame["sample_id"]
    frame.to_csv(scores, index=False)
    with pytest.raises(ValueError, match="different test samples"):
        privacy_utility_frame(collect_results(comparison), utility=())
