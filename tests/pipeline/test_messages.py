"""Log lines and error messages a user reads: reuse is logged only for a real reuse."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from miabench.pipeline import attack as stage


class _Attack:
    trainable = False


def _fake_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def collect(model, victim, device, fn, desc, on_role=None):
        columns = fn(None)
        return pd.DataFrame({"sample_id": ["a", "b"], "role": ["member", "nonmember"], **columns})

    monkeypatch.setattr(stage, "_collect", collect)
    monkeypatch.setattr(stage, "_prepare_attacks", lambda attacks, model, device: None)


def test_the_first_run_does_not_log_reusing_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_pass(monkeypatch)
    attacks = {"a": _Attack(), "b": _Attack()}
    for attack in attacks.values():
        attack.score = lambda seen: {"score": [0.1, 0.2]}
    with caplog.at_level(logging.INFO, logger=stage.log.name):
        stage._score_in_one_pass(attacks, SimpleNamespace(), None, "cpu", tmp_path)
        for name, attack in attacks.items():
            stage._attack_scores(name, attack, None, None, "cpu", tmp_path)
    assert "reusing scores" not in caplog.text and "in one pass" in caplog.text
    # a second run finds them on disk: that is a reuse, and it says so
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=stage.log.name):
        stage._attack_scores("a", attacks["a"], None, None, "cpu", tmp_path)
    assert "reusing scores of a" in caplog.text


def test_missing_data_names_prepare_data_and_data_root(tmp_path: Path) -> None:
    from miabench.pipeline.train import locate_victim
    from tests.conftest import compose_cfg

    missing = tmp_path / "no_facades_here"
    cfg = compose_cfg(
        "train_victim",
        ["experiment=shafran2021/pix2pix_facades", f"data.root={missing}"],
        root_dir=tmp_path,
    )
    with pytest.raises(FileNotFoundError) as err:
        locate_victim(cfg)
    message = str(err.value)
    assert "python -m miabench.prepare_data" in message
    assert f"data.root={missing}" in message and str(missing) in message.splitlines()[0]
