"""log_results sends the config and attack AUCs to the configured loggers; tips are dropped."""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from pathlib import Path

import pytest
import yaml

from miabench.pipeline.logging_hooks import (
    flat_metrics,
    log_results,
    logger_destination,
    silence_lightning_tips,
)
from tests.conftest import compose_cfg

RESULTS = {
    "run": {"victim": "pix2pix", "victim_key": "abc123"},
    "attacks": {
        "reconstruction_error": {"auc": 0.71, "tpr_at_1pct_fpr": 0.05, "describe": {"x": 1}},
        "membership_error": {"auc": 0.83, "auc_ci95_by_group": [0.7, 0.9]},
    },
    "utility": {"member": {"l1": 0.1}, "nonmember": {"l1": 0.3}},
    "generalization_gap": {"l1": 0.2},
}


def _results(tmp_path: Path) -> Path:
    path = tmp_path / "attack" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(RESULTS))
    return path


def test_flat_metrics_names_every_number() -> None:
    flat = flat_metrics(RESULTS)
    assert flat == {
        "attack/reconstruction_error/auc": 0.71,
        "attack/reconstruction_error/tpr_at_1pct_fpr": 0.05,
        "attack/membership_error/auc": 0.83,
        "attack/membership_error/auc_ci95_by_group/0": 0.7,
        "attack/membership_error/auc_ci95_by_group/1": 0.9,
        "utility/member/l1": 0.1,
        "utility/nonmember/l1": 0.3,
        "gap/l1": 0.2,
    }


def test_csv_logger_receives_aucs_and_config(tmp_path: Path) -> None:
    cfg = compose_cfg("run_attack", ["logger=csv", "seed=7"], root_dir=tmp_path)
    path = _results(tmp_path)
    (logger,) = log_results(cfg, path)
    rows = list(csv.DictReader((path.parent / "logs" / "metrics.csv").open()))
    assert float(rows[0]["attack/membership_error/auc"]) == 0.83
    assert float(rows[0]["attack/reconstruction_error/auc"]) == 0.71
    hparams = yaml.safe_load((path.parent / "logs" / "hparams.yaml").read_text())
    assert hparams["config"]["seed"] == 7
    assert hparams["config"]["victim"]["name"] == "pix2pix"
    assert hparams["run"]["victim_key"] == "abc123"


@pytest.mark.slow
def test_wandb_offline_run_holds_aucs_and_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = compose_cfg("run_attack", ["logger=wandb", "seed=3"], root_dir=tmp_path)
    path = _results(tmp_path)
    with caplog.at_level(logging.INFO, logger="miabench.pipeline.logging_hooks"):
        log_results(cfg, path)
    assert "logger wandb" in caplog.text and "→ None" not in caplog.text
    # An offline run is one record log (run-<id>.wandb, protobuf); history items and config
    # entries hold their key beside the JSON-encoded value.
    (run_file,) = (path.parent / "wandb").glob("offline-run-*/run-*.wandb")
    # wandb's service process may still be writing the file when finish() returns
    deadline = time.monotonic() + 60
    while b"attack/membership_error/auc" not in (blob := run_file.read_bytes()):
        assert time.monotonic() < deadline, "the AUCs never reached the wandb run"
        time.sleep(0.2)
    values = [
        blob[m.end() : m.end() + 8] for m in re.finditer(rb"attack/membership_error/auc(?!_)", blob)
    ]
    assert values and all(b"0.83" in v for v in values)
    assert b"abc123" in blob  # the run block of the config
    at = blob.index(b'"seed"')
    assert b"3" in blob[at : at + 40]


def test_tips_are_dropped_and_warnings_kept(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lightning stops propagating its logger to the root when it is first imported where the
    # root has no handler (which depends on what ran before); caplog listens at the root
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)
    silence_lightning_tips()
    silence_lightning_tips()  # idempotent
    from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud uploads and versioning, try installing x")
        rank_zero_info("GPU available: False, used: False")
        with pytest.warns(UserWarning, match="real warning"):
            rank_zero_warn("a real warning")
    messages = [r.getMessage() for r in caplog.records]
    assert "GPU available: False, used: False" in messages
    assert not any("Tip" in m for m in messages)


def test_logger_destination_is_never_the_string_none() -> None:
    from types import SimpleNamespace

    assert logger_destination(SimpleNamespace(log_dir="/x/csv")) == "/x/csv"
    wandb_like = SimpleNamespace(log_dir=None, _experiment=SimpleNamespace(dir="/x/wandb/run"))
    assert logger_destination(wandb_like) == "/x/wandb/run"
    assert logger_destination(SimpleNamespace(save_dir="/x")) == "/x"
    assert logger_destination(SimpleNamespace()) is None
