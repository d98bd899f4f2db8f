"""Tables join results.json files with the published targets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from miabench.results.table import build_table, collect_results, load_targets, write_table

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
    assert "| pix2pix | facades | 0.9000 | 0.9362 | -0.0362 |" in text
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
