"""The MINT protocol table: runs grouped by protocol, seeds summarised (mean ± sd, t-interval),
trained minus never-trained per seed; a released backbone is a measured run, not a control."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from miabench.results.mint_protocols import protocol_cells, seed_summary, write_mint_protocol_table
from miabench.results.mint_table import is_untrained

PROTOCOLS = {"d-control": "control", "d-published": "published"}


def _result(tmp: Path, data: str, seed: int, epochs: int, auc: float) -> Path:
    attacks = {
        "mint_mlp_embedding": {
            "auc": auc,
            "accuracy_at_decision": auc - 0.05,
            "auc_ci95": [auc - 0.1, min(1.0, auc + 0.1)],
            "bootstrap_unit": "group",
            "n_test": 600,
            "n_test_groups": 40,
            "describe": {
                "class": "miabench.attacks.mint.MintAuditor",
                "arch": "mlp",
                "layers": ["embedding"],
                "n_train": 3000,
            },
        }
    }
    run = {
        "victim": "iresnet_test",
        "dataset": data,
        "data_name": data,
        "seed": seed,
        "victim_epochs": epochs,
        "victim_key": f"{data}-{seed}-{epochs}",
    }
    path = tmp / f"{data}-{seed}-{epochs}" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run": run, "utility": {}, "attacks": attacks}))
    return path


def test_seed_summary_is_mean_sd_and_t_interval() -> None:
    s = seed_summary([0.5, 0.6, 0.7])
    assert s["mean"] == pytest.approx(0.6) and s["sd"] == pytest.approx(0.1)
    # t(0.975, df=2) = 4.3027: half-width 4.3027 * 0.1 / sqrt(3)
    assert s["high"] - s["mean"] == pytest.approx(4.3027 * 0.1 / 3**0.5, rel=1e-4)
    assert seed_summary([0.4])["n"] == 1


def test_protocol_table_pairs_trained_and_never_trained_by_seed(tmp_path: Path) -> None:
    paths = []
    for seed, (c_t, c_u, p_t, p_u) in enumerate(
        [(0.45, 0.48, 0.99, 0.97), (0.40, 0.50, 1.0, 0.99)]
    ):
        paths += [
            _result(tmp_path, "d-control", seed, 12, c_t),
            _result(tmp_path, "d-control", seed, 0, c_u),
            _result(tmp_path, "d-published", seed, 12, p_t),
            _result(tmp_path, "d-published", seed, 0, p_u),
        ]
    paths.append(_result(tmp_path, "other-data", 0, 12, 0.7))  # not a listed protocol
    table = OmegaConf.create(
        {
            "name": "t",
            "title": "T",
            "out_dir": str(tmp_path / "out"),
            "command": "cmd",
            "protocols": PROTOCOLS,
        }
    )
    md, csv = write_mint_protocol_table(table, paths)
    cells = pd.read_csv(csv)
    assert len(cells) == 8 and set(cells.protocol) == {"control", "published"}
    text = md.read_text()
    # control: trained 0.425 ± 0.035, never-trained 0.49 ± 0.014; gain -0.03, -0.10 → -0.065
    row = next(
        line for line in text.splitlines() if line.startswith("| control | mlp model_outcome")
    )
    assert "0.425 ± 0.035" in row and "0.490 ± 0.014" in row and "-0.065 ± 0.049" in row
    assert text.index("| control |") < text.index("| published |")
    with pytest.raises(ValueError, match="two runs fill protocol cell"):
        protocol_cells([json.loads(p.read_text()) for p in paths[:2] + paths[:1]], PROTOCOLS)


def test_a_released_backbone_is_measured_not_a_control() -> None:
    control = {"run": {"victim_epochs": 0, "victim_info": {"fingerprint": "x"}}}
    released = {"run": {"victim_epochs": 0, "victim_info": {"weights_sha256": "ab" * 32}}}
    assert is_untrained(control) and not is_untrained(released)
