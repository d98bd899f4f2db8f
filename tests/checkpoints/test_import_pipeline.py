"""``victim.checkpoint``: the attack stage imports an authors' pix2pix file and never trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from miabench.checkpoints.base import CheckpointError, file_sha256
from miabench.pipeline import train as train_stage
from miabench.pipeline.attack import run_attack
from miabench.pipeline.table import imported_notes
from miabench.victims.nets.unet import UnetGenerator
from tests.checkpoints.authors_unet import randomize
from tests.conftest import compose_cfg
from tests.pipeline.test_end_to_end import tiny_overrides


@pytest.mark.slow
def test_run_attack_on_an_imported_pix2pix_without_training(
    aligned_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = tmp_path / "released" / "latest_net_G.pth"
    released.parent.mkdir()
    torch.save(randomize(UnetGenerator(3, 3, 5, 16, dropout=0.0)), released)

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("an imported victim must not be trained")

    monkeypatch.setattr(train_stage, "_train", no_training)
    overrides = tiny_overrides(
        aligned_root, tmp_path / "out", f"victim.checkpoint={released}", "split.n_nonmembers=8"
    )
    results = json.loads(run_attack(compose_cfg("run_attack", overrides)).read_text())
    run = results["run"]
    checkpoint = run["provenance"]["checkpoint"]
    assert checkpoint["sha256"] == file_sha256(released) and checkpoint["layout"] == "pix2pix"
    assert checkpoint["path"] == str(released)
    assert run["victim_weights"].startswith("imported pix2pix sha256:")
    assert "train" not in run["provenance"]["stages"]  # no training stage at all
    assert "import" in run["provenance"]["stages"]
    assert "membership_error" in results["attacks"]
    victim_dir = Path(run["victim_dir"])
    assert json.loads((victim_dir / "victim.json").read_text())["imported"] is True
    assert not (victim_dir / "checkpoints").exists()
    assert imported_notes([results]) == [
        f"Victim weights imported (not trained here): pix2pix on {run['dataset']}: "
        f"{run['victim_weights']}"
    ]

    # a file with one key renamed fails before the data is even looked at
    bad = torch.load(released, weights_only=True)
    bad["model.model.0.weight_x"] = bad.pop("model.model.0.weight")
    torch.save(bad, tmp_path / "bad_net_G.pth")
    overrides = tiny_overrides(
        tmp_path / "no-data-here",
        tmp_path / "out",
        f"victim.checkpoint={tmp_path / 'bad_net_G.pth'}",
    )
    with pytest.raises(
        CheckpointError, match=r"bad_net_G.pth: not a pix2pix.*model.model.0.weight_x"
    ):
        run_attack(compose_cfg("run_attack", overrides))
