"""Tables join results.json files with the published targets."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from miabench.metrics.bootstrap import roc_intervals
from miabench.metrics.roc import evaluate_scores
from miabench.results.markdown import interval_cell
from miabench.results.runs import (
    collect_results,
    describe_grouping,
    group_seeds,
    grouping_lines,
    setting_key,
)
from miabench.results.table import build_table, load_targets, no_targets, write_table

COLUMNS = {
    "reconstruction_error_auc": {"attack": "reconstruction", "metric": "auc"},
    "membership_error_auc": {"attack": "membership_error", "metric": "auc"},
}


def _results(victim: str, dataset: str, rec_auc: float, mem_auc: float) -> dict:
    return {
        "run": {
            "victim": victim,
            "dataset": dataset,
            "data_name": dataset,
            "data_root": "embedded",
            "image_size": 32,
            "defense": "none",
            "seed": 0,
            "n_members": 48,
            "n_nonmembers": 8,
        },
        "utility": {
            "member": {"l1": 0.05, "psnr": 25.0, "ssim": 0.9},
            "nonmember": {"l1": 0.1, "psnr": 20.0, "ssim": 0.8},
        },
        "attacks": {
            "reconstruction": {"auc": rec_auc, "tpr_at_1pct_fpr": 0.25, "describe": {}},
            "membership_error": {
                "auc": mem_auc,
                "tpr_at_1pct_fpr": 0.5,
                "describe": {"weights": "imagenet"},
            },
        },
    }


@pytest.fixture
def result_files(tmp_path: Path) -> list[Path]:
    paths = []
    runs = [("pix2pix", "facades", 0.9, 0.95), ("pix2pix", "unpublished", 0.6, 0.7)]
    for i, run in enumerate(runs):
        path = tmp_path / f"run{i}" / "results.json"
        path.parent.mkdir()
        path.write_text(json.dumps(_results(*run)))
        paths.append(path)
    return paths


def test_bundled_targets_match_shared_copy() -> None:
    targets = load_targets("shafran2021_table1")
    assert list(targets.columns) == [
        "victim",
        "dataset",
        "reconstruction_error_auc",
        "membership_error_auc",
    ]
    row = targets.set_index(["victim", "dataset"]).loc[("pix2pix", "facades")]
    assert row["reconstruction_error_auc"] == 0.9362
    shared = Path("/work/shared/targets/shafran2021_table1.csv")
    if shared.exists():
        pd.testing.assert_frame_equal(targets, pd.read_csv(shared))


def test_unknown_targets_name_lists_available() -> None:
    with pytest.raises(FileNotFoundError, match="shafran2021_table1"):
        load_targets("no_such_table")


def test_build_table_deltas(result_files: list[Path]) -> None:
    targets = load_targets("shafran2021_table1")
    table = build_table(collect_results(result_files), targets, COLUMNS, include_missing=False)
    assert list(zip(table.victim, table.dataset, strict=True)) == [
        ("pix2pix", "facades"),
        ("pix2pix", "unpublished"),
    ]
    facades, other = table.iloc[0], table.iloc[1]
    assert facades["reconstruction_error_auc_measured"] == 0.9
    assert facades["reconstruction_error_auc_published"] == 0.9362
    assert facades["reconstruction_error_auc_delta"] == pytest.approx(0.9 - 0.9362)
    assert facades["membership_error_auc_delta"] == pytest.approx(0.95 - 0.9759)
    assert math.isnan(other["reconstruction_error_auc_published"])
    assert math.isnan(other["reconstruction_error_auc_delta"])
    assert facades["weights"] == "imagenet"
    assert facades["data"] == "facades (embedded)"
    assert facades["membership_error_tpr_at_1pct_fpr"] == 0.5
    assert facades["nonmember_psnr"] == 20.0 and facades["n_members"] == 48


def test_measured_only_column_needs_no_published_number(result_files: list[Path]) -> None:
    """`published: false` shows a measured column (e.g. a second definition of an attack)
    without a published one; an unknown column without it is still refused as a typo."""
    targets = load_targets("shafran2021_table1")
    columns = {
        **COLUMNS,
        "second_definition_auc": {
            "attack": "membership_error",
            "metric": "auc",
            "published": False,
        },
    }
    table = build_table(collect_results(result_files), targets, columns, include_missing=False)
    assert table.iloc[0]["second_definition_auc_measured"] == 0.95
    assert (
        "second_definition_auc_published" not in table
        and "second_definition_auc_delta" not in table
    )
    columns["second_definition_auc"] = {"attack": "membership_error", "metric": "auc"}
    with pytest.raises(ValueError, match="second_definition_auc"):
        build_table(collect_results(result_files), targets, columns)


def test_include_missing_adds_published_rows(result_files: list[Path]) -> None:
    targets = load_targets("shafran2021_table1")
    table = build_table(collect_results(result_files), targets, COLUMNS, include_missing=True)
    assert len(table) == len(targets) + 1
    maps = table[(table.victim == "pix2pix") & (table.dataset == "maps2sat")].iloc[0]
    assert maps["membership_error_auc_published"] == 0.8565
    assert math.isnan(maps["membership_error_auc_measured"])
    assert pd.isna(maps["n_members"])


def test_write_table(result_files: list[Path], tmp_path: Path) -> None:
    targets = load_targets("shafran2021_table1")
    table = build_table(collect_results(result_files), targets, COLUMNS)
    md, csv = write_table(
        table, tmp_path / "out", "t1", "Table 1", ["Regenerate: `python -m miabench.make_table`"]
    )
    text = md.read_text(encoding="utf-8")
    assert text.startswith("# Table 1\n")
    assert "| pix2pix | facades | 0.900 | 0.9362 | -0.0362 |" in text
    assert "—" in text and "Regenerate: `python -m miabench.make_table`" in text
    assert "| 48 |" in text  # counts stay integers despite rows without a run
    back = pd.read_csv(csv)
    assert list(back.columns) == list(table.columns) and len(back) == len(table)


def test_missing_results_file_is_named(result_files: list[Path], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "results.json"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        collect_results([*result_files, missing])


def test_malformed_results_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "results.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=str(bad)):
        collect_results([bad])
    bad.write_text(json.dumps({"attacks": {}}))
    with pytest.raises(ValueError, match=str(bad)):
        collect_results([bad])


def test_unknown_target_column_is_refused(result_files: list[Path]) -> None:
    with pytest.raises(ValueError, match="typo_auc"):
        build_table(
            collect_results(result_files),
            load_targets("shafran2021_table1"),
            {"typo_auc": {"attack": "reconstruction", "metric": "auc"}},
        )


def write_seed_run(folder: Path, seed: int, shift: float, defense: str = "none") -> dict:
    """A results.json of real metrics and the scores.csv beside it: 40 + 50 test rows."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(80, dtype=int), np.zeros(100, dtype=int)]
    split = np.where(np.arange(180) % 2 == 0, "calibration", "test")
    frame = pd.DataFrame(
        {
            "sample_id": [f"img{i:03d}.png" for i in range(180)],
            "role": np.where(labels == 1, "member", "nonmember"),
            "label": labels,
            "split": split,
            "reconstruction.score": rng.normal(size=180) + shift * labels,
        }
    )
    score, test = frame["reconstruction.score"].to_numpy(), split == "test"
    metrics = evaluate_scores(score, labels, split == "calibration")
    metrics.update(roc_intervals(score[test], labels[test], n_boot=200, seed=seed))
    result = _results("pix2pix", "facades", 0.0, 0.0)
    result["run"].update(seed=seed, defense=defense)
    result["attacks"] = {"reconstruction": {**metrics, "describe": {"seed": seed}}}
    folder.mkdir(parents=True)
    frame.to_csv(folder / "scores.csv", index=False)
    (folder / "results.json").write_text(json.dumps(result))
    return metrics


def test_a_seed_sweep_aggregates_into_one_row(tmp_path: Path) -> None:
    runs = [write_seed_run(tmp_path / f"s{seed}", seed, 1.0) for seed in range(3)]
    write_seed_run(tmp_path / "other", 0, 1.0, defense="dropout")
    paths = sorted(tmp_path.glob("*/results.json"))
    columns = {"rec_auc": {"attack": "reconstruction", "metric": "auc"}}
    targets = no_targets(columns)
    table = build_table(collect_results(paths), targets, columns)
    assert list(table.defense) == ["dropout", "none"]
    row = table.set_index("defense").loc["none"]
    aucs = [r["auc"] for r in runs]
    assert row["n_seeds"] == 3 and row["seeds"] == "0,1,2"
    assert row["rec_auc_measured"] == pytest.approx(np.mean(aucs))
    assert row["rec_auc_measured_std"] == pytest.approx(np.std(aucs, ddof=1))
    # Student's t-interval over the three seeds' AUCs (training randomness counted), and
    # each seed's value beside it
    low, high = stats.t.interval(0.95, 2, loc=np.mean(aucs), scale=stats.sem(aucs))
    assert row["rec_auc_measured_lo"] == pytest.approx(low)
    assert row["rec_auc_measured_hi"] == pytest.approx(high)
    assert row["rec_auc_measured_per_seed"] == ";".join(f"{a:.4f}" for a in aucs)
    assert row["n_test_members"] == 40 and row["n_test_nonmembers"] == 50
    # 50 test non-members cannot resolve 1 % FPR
    assert pd.isna(row["reconstruction_tpr_at_1pct_fpr"])
    assert (
        row["reconstruction_tpr_at_1pct_fpr_note"] == "not observable: 50 test non-members < 1000"
    )

    per_seed = build_table(collect_results(paths), targets, columns, per_seed=True)
    ours = per_seed[per_seed.defense == "none"]
    assert list(ours.seeds) == ["0", "1", "2"] and (ours.n_seeds == 1).all()
    assert list(ours.rec_auc_measured) == pytest.approx(aucs)
    assert list(ours.rec_auc_measured_lo) == [r["auc_ci95"][0] for r in runs]

    md, csv = write_table(table, tmp_path / "out", "t", "T", per_seed=per_seed)
    text = md.read_text(encoding="utf-8")
    mean, std = row["rec_auc_measured"], row["rec_auc_measured_std"]
    lo, hi = row["rec_auc_measured_lo"], row["rec_auc_measured_hi"]
    assert f"| {mean:.3f} ± {std:.3f} [{lo:.3f}, {hi:.3f}] |" in text
    assert "| n/o |" in text and "not observable" in text
    assert "rec_auc_measured_lo" in pd.read_csv(csv).columns
    assert (tmp_path / "out" / "t_per_seed.md").is_file()


def test_paired_columns_compare_two_attacks_of_the_same_runs(tmp_path: Path) -> None:
    """`paired:` a − b on each seed's test samples: the mean over seeds of the two AUCs'
    difference (as sklearn computes them), significant for a strong vs a blind scorer, exactly
    0 for an attack against itself."""
    from sklearn.metrics import roc_auc_score

    expected = []
    for seed in range(3):
        folder = tmp_path / f"s{seed}"
        write_seed_run(folder, seed, 2.0)
        frame = pd.read_csv(folder / "scores.csv")
        frame["blind.score"] = np.random.default_rng(10 + seed).normal(size=len(frame))
        frame.to_csv(folder / "scores.csv", index=False)
        result = json.loads((folder / "results.json").read_text())
        result["attacks"]["blind"] = {**result["attacks"]["reconstruction"], "describe": {}}
        (folder / "results.json").write_text(json.dumps(result))
        test = frame[frame.split == "test"]
        expected.append(
            roc_auc_score(test.label, test["reconstruction.score"])
            - roc_auc_score(test.label, test["blind.score"])
        )
    columns = {"rec_auc": {"attack": "reconstruction", "metric": "auc"}}
    paired = {
        "rec_vs_blind": {"a": "reconstruction", "b": "blind"},
        "rec_vs_rec": {"a": "reconstruction", "b": "reconstruction", "metric": "auc"},
        "rec_vs_missing": {"a": "reconstruction", "b": "nothing"},
    }
    paths = sorted(tmp_path.glob("*/results.json"))
    row = build_table(collect_results(paths), no_targets(columns), columns, paired=paired).iloc[0]
    assert row["rec_vs_blind"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert row["rec_vs_blind_sig"] and row["rec_vs_blind_lo"] > 0
    assert row["rec_vs_rec"] == 0 and not row["rec_vs_rec_sig"]
    assert pd.isna(row["rec_vs_missing"]) and "nothing" in row["rec_vs_missing_note"]


def _finished(folder: Path, when: str) -> None:
    path = folder / "results.json"
    result = json.loads(path.read_text())
    result["run"]["provenance"] = {"stages": {"attack": {"finished": when}}}
    path.write_text(json.dumps(result))


def test_a_rerun_of_the_same_seed_replaces_the_older_result(tmp_path: Path) -> None:
    """The newer by recorded end time wins, whatever the files' modification times (a fresh
    clone's are meaningless) or the order of the paths."""
    write_seed_run(tmp_path / "b_old", 0, 0.0)
    newer = write_seed_run(tmp_path / "a_new", 0, 2.0)
    _finished(tmp_path / "b_old", "2026-01-01T10:00:00+00:00")
    _finished(tmp_path / "a_new", "2026-01-02T09:00:00+00:00")
    paths = [tmp_path / "a_new" / "results.json", tmp_path / "b_old" / "results.json"]
    os.utime(paths[0], (1, 1))  # the newer run has the older file
    columns = {"rec_auc": {"attack": "reconstruction", "metric": "auc"}}
    for order in (paths, paths[::-1]):
        table = build_table(collect_results(order), no_targets(columns), columns)
        assert len(table) == 1 and table.rec_auc_measured.iloc[0] == newer["auc"]
    assert group_seeds(collect_results(paths))[1] == [str(paths[1])]


def test_without_recorded_times_the_later_path_wins(tmp_path: Path) -> None:
    write_seed_run(tmp_path / "a", 0, 0.0)
    later = write_seed_run(tmp_path / "b", 0, 2.0)
    paths = [tmp_path / "b" / "results.json", tmp_path / "a" / "results.json"]
    os.utime(paths[0], (1, 1))
    columns = {"rec_auc": {"attack": "reconstruction", "metric": "auc"}}
    table = build_table(collect_results(paths), no_targets(columns), columns)
    assert table.rec_auc_measured.iloc[0] == later["auc"]


def _with_overrides(folder: Path, overrides: list[str]) -> None:
    path = folder / "results.json"
    result = json.loads(path.read_text())
    result["run"]["provenance"] = {"overrides": overrides}
    path.write_text(json.dumps(result))


def test_runs_differing_only_in_an_override_are_two_settings(tmp_path: Path) -> None:
    write_seed_run(tmp_path / "e1", 0, 1.0)
    write_seed_run(tmp_path / "e3", 0, 1.0)
    write_seed_run(tmp_path / "e3s1", 1, 1.0)
    _with_overrides(tmp_path / "e1", ["trainer.max_epochs=1", "seed=0", "table=x"])
    _with_overrides(tmp_path / "e3", ["trainer.max_epochs=3", "seed=0", "paths.output_dir=o"])
    # seed, paths, table and progress bars do not change what was measured
    _with_overrides(
        tmp_path / "e3s1",
        ["seed=1", "trainer.max_epochs=3", "trainer.enable_progress_bar=False", "table=y"],
    )
    results = collect_results(sorted(tmp_path.glob("*/results.json")))
    assert setting_key(results[0]) != setting_key(results[1])
    assert setting_key(results[1]) == setting_key(results[2])
    groups, superseded = group_seeds(results)
    assert [len(g) for g in groups] == [1, 2] and superseded == []
    lines = grouping_lines(describe_grouping(results), tmp_path)
    assert (
        lines[0]
        == "Setting pix2pix / facades / none (trainer.max_epochs=1): seeds 0 from `e1/results.json`"
    )
    assert lines[1].endswith("seeds 0,1 from `e3/results.json`, `e3s1/results.json`")


def test_overrides_of_older_results_are_still_read(tmp_path: Path) -> None:
    write_seed_run(tmp_path / "a", 0, 1.0)
    write_seed_run(tmp_path / "b", 1, 1.0)
    for folder, epochs in (("a", 1), ("b", 3)):
        path = tmp_path / folder / "results.json"
        result = json.loads(path.read_text())
        result["run"]["overrides"] = [f"trainer.max_epochs={epochs}"]
        path.write_text(json.dumps(result))
    results = collect_results(sorted(tmp_path.glob("*/results.json")))
    assert len(group_seeds(results)[0]) == 2


def test_interval_cells() -> None:
    assert interval_cell(0.9623, 0.931, 0.9871) == "0.962 [0.931, 0.987]"
    assert interval_cell(0.9623, 0.931, 0.9871, std=0.004) == "0.962 ± 0.004 [0.931, 0.987]"
    assert interval_cell(-0.1, -0.2, -0.05, significant=True) == "-0.100 [-0.200, -0.050]*"
    assert interval_cell(float("nan"), note="not observable: 50 < 100") == "n/o"
    assert interval_cell(None) == "—"
    assert interval_cell(-0.0, 0.0, 0.0) == "0.000 [0.000, 0.000]"
    assert interval_cell(2e-5, 1e-5, 3e-5, significant=True) == "2.0e-05 [1.0e-05, 3.0e-05]*"
