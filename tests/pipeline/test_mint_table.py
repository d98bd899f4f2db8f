"""The MINT table: results.json files of MINT runs → rows = layer, columns = N, beside the paper."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from miabench.pipeline.table import make_table, rebuild_table
from tests.conftest import CONF_DIR, compose_cfg

LAYERS = {
    "conv1": ["conv1"],
    "embedding": ["embedding"],
    "all_conv": ["conv1", "conv2", "conv3", "conv4"],
}


def _result(
    path: Path, n_train: int, key: str, accuracy: float, by_group: bool = True, epochs: int = 15
) -> None:
    attacks = {}
    for i, (name, layers) in enumerate(LAYERS.items()):
        attacks[f"mint_mlp_{name}"] = {
            "auc": accuracy + 0.05,
            "tpr_at_1pct_fpr": 0.02,
            "accuracy_at_decision": accuracy + i / 100,
            "auc_ci95_by_group": [accuracy - 0.05, accuracy + 0.15],
            "n_test": 500,
            "describe": {
                "class": "MintAuditor",
                "arch": "mlp",
                "layers": layers,
                "n_train": n_train,
                "n_train_members": n_train // 2,
                "n_train_nonmembers": n_train // 2,
            },
        }
    attacks["mint_cnn_conv1"] = {
        **attacks["mint_mlp_conv1"],
        "describe": {**attacks["mint_mlp_conv1"]["describe"], "arch": "cnn"},
    }
    attacks["nearest_identity"] = {
        "auc": accuracy - 0.2,
        "tpr_at_1pct_fpr": 0.0,
        "accuracy_at_decision": accuracy - 0.1,
        "n_test": 500,
        "describe": {"class": "IdentityProximityAuditor", "n_train": n_train},
    }
    attacks["other"] = {"auc": 0.9, "describe": {"class": "ReconstructionError"}}
    run = {
        "victim": "iresnet_test",
        "data_name": "fashion_identities",
        "dataset": "proxy",
        "victim_key": key,
        "n_members": 10,
        "n_nonmembers": 10,
        "calibration_by_group": by_group,
        "victim_epochs": epochs,
    }
    utility = {"member": {"identification": 0.9, "verification_accuracy": 0.8}, "nonmember": {}}
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run": run, "utility": utility, "attacks": attacks}))


def _row(text: str, name: str) -> dict[str, str]:
    """Header → cell of the first markdown table row starting with ``name``."""
    lines = text.splitlines()
    line = next(li for li in lines if li.startswith(f"| {name}"))
    header = next(li for li in lines[: lines.index(line)][::-1] if li.startswith("| auditable"))
    split = lambda li: [c.strip() for c in li.strip("|").split("|")]  # noqa: E731
    return dict(zip(split(header), split(line), strict=True))


def test_mint_table_layout_and_published_numbers(tmp_path: Path) -> None:
    cfg = compose_cfg("make_table", ["table=embedded_mint"], root_dir=tmp_path)
    attacks = tmp_path / "outputs" / "attacks"
    _result(attacks / "iresnet_test-fashion_identities-a" / "results.json", 1000, "v1", 0.6)
    _result(attacks / "iresnet_test-fashion_identities-b" / "results.json", 15000, "v1", 0.7)
    md, csv = rebuild_table(cfg)
    cells = pd.read_csv(csv)
    assert len(cells) == 2 * (len(LAYERS) + 2)  # + the CNN cell and the diagnostic
    row = cells[
        (cells.arch == "mlp")
        & (cells.auditable_data == "all_conv_layers")
        & (cells.n_train == 15000)
    ]
    assert row.accuracy.item() == pytest.approx(0.72)
    text = md.read_text()
    published = pd.read_csv(CONF_DIR.parent / "src/miabench/targets/mint2024_table1_mlp.csv")
    cols = _row(text, "all_conv_layers")
    assert float(cols["accuracy N=1000"]) == pytest.approx(0.62)
    assert float(cols["accuracy N=15000 (for 50K)"]) == pytest.approx(0.72)
    # the AUC with its (identity-bootstrap) interval in one cell
    assert cols["auc N=15000 (for 50K)"] == "0.750 [0.650, 0.850]"
    assert cols["tpr_at_1pct_fpr N=1000"] == "0.020"
    assert cols["untrained auc N=1000"] == cols["untrained auc N=15000 (for 50K)"] == "—"
    row_published = published.set_index("auditable_data").loc["all_conv_layers"]
    assert float(cols["paper accuracy 1K"]) == row_published.acc_1k
    assert float(cols["paper accuracy 50K"]) == row_published.acc_50k
    assert "N=15000 (for 50K)" in text and "PROXY" in text
    assert "| conv_layer_2 |" in text and "—" in text  # rows without a run stay visible
    assert "nearest-identity" in text and "| 0.500 |" in text  # diagnostic at N=15000: 0.7 - 0.2

    # the never-trained control (victim_epochs 0) fills the "untrained auc" columns, not cells
    _result(
        attacks / "iresnet_test-fashion_identities-u" / "results.json", 15000, "v0", 0.45, epochs=0
    )
    md, csv = rebuild_table(cfg)
    assert not (pd.read_csv(csv).victim_key == "v0").any()
    cols = _row(md.read_text(), "all_conv_layers")
    assert float(cols["untrained auc N=15000 (for 50K)"]) == pytest.approx(0.45 + 0.05)
    assert cols["untrained auc N=1000"] == "—"

    # a by-sample run (another table) does not enter the identity-disjoint one
    _result(attacks / "iresnet_test-fashion_identities-s" / "results.json", 1000, "v3", 0.9, False)
    assert pd.read_csv(rebuild_table(cfg)[1]).accuracy.max() < 0.9
    # a cell filled twice (another victim in the glob) is refused, naming both
    _result(attacks / "iresnet_test-fashion_identities-c" / "results.json", 1000, "v2", 0.5)
    # (given both: copied as records, the newer run of a setting and seed replaces the older)
    cfg.table.results = [str(attacks / "*" / "results.json")]
    with pytest.raises(ValueError, match="v1 and v2|v2 and v1"):
        make_table(cfg)


def test_writer_must_be_a_target_node(tmp_path: Path) -> None:
    cfg = compose_cfg("make_table", ["table=embedded_mint"], root_dir=tmp_path)
    # the form before table writers were _target_ nodes: refused, naming the table and key
    cfg.table.writer = "miabench.results.mint_table.write_mint_table"
    with pytest.raises(ValueError, match="embedded_mint.*`writer` must be a node"):
        make_table(cfg)
