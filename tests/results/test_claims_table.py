"""The claims tables (results/shafran2021_claims/): runs matched to points, output dimension
from the victim's key, intervals and counts kept, plot and run files written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import DictConfig, OmegaConf

from miabench.metrics import seeds
from miabench.results.claims_table import match_point, output_dimension, write_claims_table
from miabench.results.runs import VICTIM_KEY

POINTS = [
    {
        "label": "classifier",
        "match": {"victim": "resnet18"},
        "output_dim": ["data.num_classes"],
        "output_dim_unit": "classes",
    },
    {
        "label": "pix2pix",
        "match": {"victim": "pix2pix", "direction": "AtoB"},
        "output_dim": ["data.image_size", "data.image_size", "victim.module.out_channels"],
        "output_dim_unit": "pixels x channels",
    },
]


def _run(tmp_path: Path, name: str, run: dict, key: dict, auc: float) -> Path:
    victim_dir = tmp_path / "victims" / name
    victim_dir.mkdir(parents=True)
    (victim_dir / "key.json").write_text(json.dumps(key))
    attack = {
        "auc": auc,
        "auc_ci95": [auc - 0.1, min(auc + 0.05, 1.0)],
        "tpr_at_1pct_fpr": 0.2,
        "tpr_at_1pct_fpr_ci95": [0.1, 0.3],
        "ci_level": 0.95,
        "n_test_members": 32,
        "n_test_nonmembers": 100,
        "describe": {},
    }
    result = {
        "run": {
            "victim": run["victim"],
            "dataset": run.get("data_name", "d"),
            "data_name": run.get("data_name", "d"),
            "direction": run.get("direction"),
            "image_size": key["data"].get("image_size"),
            "defense": "none",
            "seed": 0,
            "n_members": 64,
            "n_nonmembers": 200,
            "victim_dir": str(victim_dir),
        },
        "utility": {"nonmember": {"accuracy": 0.7}},
        "attacks": {"reconstruction": attack},
    }
    path = tmp_path / "attacks" / name / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(result))
    (path.parent / "roc_linear.png").write_bytes(b"png")
    return path


def _table(tmp_path: Path) -> DictConfig:
    """A claims table config over the reconstruction attack's AUC, written under tmp_path."""
    return OmegaConf.create(
        {
            "name": "claims",
            "title": "claims",
            "out_dir": str(tmp_path / "out"),
            "command": "python -m miabench.make_table table=claims",
            "columns": {"reconstruction_auc": {"attack": "reconstruction", "metric": "auc"}},
            "points": POINTS,
            "x_axis": "output_dim",
            "utility": ["accuracy"],
        }
    )


def test_match_point_takes_the_first_whose_fields_all_match() -> None:
    assert match_point({"victim": "pix2pix", "direction": "AtoB"}, POINTS) == 1
    assert match_point({"victim": "pix2pix", "direction": "BtoB"}, POINTS) is None
    assert match_point({"victim": "resnet18", "direction": "BtoB"}, POINTS) == 0


def test_output_dimension_is_the_product_of_config_values() -> None:
    key = {"data": {"image_size": 16, "num_classes": 11}, "victim": {"module": {"c": 3}}}
    assert (
        output_dimension(key, ["data.image_size", "data.image_size", "victim.module.c"], "k") == 768
    )
    assert output_dimension(key, ["data.num_classes"], "k") == 11
    with pytest.raises(KeyError, match="k: no config value at 'data.missing'"):
        output_dimension(key, ["data.missing"], "k")


def test_write_claims_table(tmp_path: Path) -> None:
    paths = [
        _run(
            tmp_path,
            "big",
            {"victim": "pix2pix", "direction": "AtoB"},
            {"data": {"image_size": 64}, "victim": {"module": {"out_channels": 3}}},
            0.95,
        ),
        _run(
            tmp_path,
            "small",
            {"victim": "pix2pix", "direction": "AtoB"},
            {"data": {"image_size": 16}, "victim": {"module": {"out_channels": 3}}},
            0.7,
        ),
        _run(
            tmp_path,
            "cls",
            {"victim": "resnet18", "direction": "BtoB"},
            {"data": {"image_size": 64, "num_classes": 10}, "victim": {}},
            0.6,
        ),
        # matches no point: left out
        _run(
            tmp_path,
            "other",
            {"victim": "pix2pix", "direction": "BtoB"},
            {"data": {"image_size": 64}, "victim": {"module": {"out_channels": 3}}},
            0.5,
        ),
    ]
    table = _table(tmp_path)
    md, csv = write_claims_table(table, paths)
    frame = pd.read_csv(csv)
    assert frame["point"].tolist() == ["classifier", "pix2pix", "pix2pix"]
    assert frame["output_dim"].tolist() == [10, 768, 12288]
    assert frame["output_dim_of"].tolist() == ["classes", "pixels x channels", "pixels x channels"]
    assert frame["reconstruction_auc"].tolist() == [0.6, 0.7, 0.95]
    assert frame["reconstruction_auc_lo"].round(6).tolist() == [0.5, 0.6, 0.85]
    assert frame["reconstruction_tpr_at_1pct_fpr"].tolist() == [0.2] * 3
    assert (frame["n_test_members"] == 32).all() and (frame["n_test_nonmembers"] == 100).all()
    assert "0.950 [0.850, 1.000]" in md.read_text()
    out = tmp_path / "out"
    assert (out / "claims.png").stat().st_size > 1000
    assert (out / "claims_per_seed.csv").is_file()
    # the run records are the pipeline's (pipeline.table.copy_records): the writer adds none
    assert not (out / "runs").exists()
    # no run at all: a clear error instead of an empty table
    with pytest.raises(ValueError, match="no result matches"):
        write_claims_table(table, paths[3:])


def _scores(path: Path, ids: list[str], labels: list[int], score: list[float]) -> None:
    pd.DataFrame(
        {
            "sample_id": ids,
            "role": ["member" if y else "nonmember" for y in labels],
            "label": labels,
            "split": "test",
            "reconstruction.score": score,
        }
    ).to_csv(path.parent / "scores.csv", index=False)


def test_paired_differences_on_shared_test_samples(tmp_path: Path) -> None:
    key64 = {"data": {"image_size": 64}, "victim": {"module": {"out_channels": 3}}}
    key16 = {"data": {"image_size": 16}, "victim": {"module": {"out_channels": 3}}}
    ref = _run(tmp_path, "ref", {"victim": "pix2pix", "direction": "AtoB"}, key64, 1.0)
    same = _run(tmp_path, "same", {"victim": "pix2pix", "direction": "AtoB"}, key16, 1.0)
    other = _run(
        tmp_path,
        "cls",
        {"victim": "resnet18", "direction": "BtoB"},
        {"data": {"num_classes": 10}},
        0.5,
    )
    ids = [f"train/{i}.png" for i in range(40)]
    labels = [1] * 20 + [0] * 20
    perfect = [1.0] * 20 + [0.0] * 20
    _scores(ref, ids, labels, perfect)
    _scores(same, ids[::-1], labels[::-1], perfect[::-1])  # row order does not matter
    # the same samples scored at chance: AUC 0.5 exactly (every score equal)
    _scores(other, ids, labels, [0.0] * 40)
    table = OmegaConf.create(
        {
            "name": "paired",
            "title": "paired",
            "out_dir": str(tmp_path / "out"),
            "command": "c",
            "columns": {"reconstruction_auc": {"attack": "reconstruction", "metric": "auc"}},
            "points": POINTS,
            "paired_reference": {"match": {"victim": "pix2pix", "image_size": 64}},
        }
    )
    _, csv = write_claims_table(table, [ref, same, other])
    frame = pd.read_csv(csv).set_index("output_dim")
    # identical scorers: a difference of exactly 0 in every replicate, never significant
    assert frame.loc[768, "reconstruction_auc_vs_ref"] == 0.0
    assert not frame.loc[768, "reconstruction_auc_vs_ref_sig"]
    # chance vs perfect on the same samples, but another victim trained once: -0.5 shown,
    # untested (one seed says nothing about training randomness)
    assert frame.loc[10, "reconstruction_auc_vs_ref"] == pytest.approx(-0.5)
    assert not frame.loc[10, "reconstruction_auc_vs_ref_sig"]
    assert pd.isna(frame.loc[10, "reconstruction_auc_vs_ref_p"])
    assert (frame["paired_reference"] == "pix2pix").all()
    # the same victim (equal victim_key) scored two ways: the samples' bootstrap tests it,
    # p at its floor 2 / (B + 1), still significant after Holm over the table's tests
    for path in (ref, other):
        result = json.loads(path.read_text())
        result["run"]["victim_key"] = "shared"
        path.write_text(json.dumps(result))
    _, csv = write_claims_table(table, [ref, same, other])
    frame = pd.read_csv(csv).set_index("output_dim")
    # the p-value floor 2 / (B + 1), B the p-value replicates (1000 in these tests: conftest)
    assert frame.loc[10, "reconstruction_auc_vs_ref_p"] == pytest.approx(
        2 / (seeds.P_VALUE_REPLICATES + 1)
    )
    assert frame.loc[10, "reconstruction_auc_vs_ref_sig"]
    assert "Holm correction over this table's" in (tmp_path / "out" / "paired.md").read_text()
    # a run tested on other samples gets no difference
    # (a new file size: the table caches a scores.csv by path, mtime and size)
    _scores(same, [f"elsewhere/{i}.png" for i in range(40)], labels, perfect)
    _, csv = write_claims_table(table, [ref, same])
    assert pd.isna(pd.read_csv(csv).set_index("output_dim").loc[768, "reconstruction_auc_vs_ref"])
    # a reference that matches several settings is refused
    table.paired_reference = {"match": {"victim": "pix2pix"}}
    with pytest.raises(ValueError, match="matches 2 settings"):
        write_claims_table(table, [ref, same])


def test_victim_key_beside_the_record_serves_a_fresh_clone(tmp_path: Path) -> None:
    """A fresh clone has no cached victims: the victim_key.json copied beside the record is
    what gives the output dimension."""
    path = _run(
        tmp_path,
        "big",
        {"victim": "pix2pix", "direction": "AtoB"},
        {"data": {"image_size": 64}, "victim": {"module": {"out_channels": 3}}},
        0.95,
    )
    victim_dir = Path(json.loads(path.read_text())["run"]["victim_dir"])
    (path.parent / VICTIM_KEY).write_text((victim_dir / "key.json").read_text())
    (victim_dir / "key.json").unlink()
    table = _table(tmp_path)
    _, csv = write_claims_table(table, [path])
    assert pd.read_csv(csv)["output_dim"].tolist() == [12288]
    (path.parent / VICTIM_KEY).unlink()
    with pytest.raises(FileNotFoundError, match=VICTIM_KEY):
        write_claims_table(table, [path])
