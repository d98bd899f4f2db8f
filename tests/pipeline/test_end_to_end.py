"""The three stages on a tiny aligned dataset: caching, resume, and an overfit victim's AUC."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest

from miabench.pipeline.attack import run_attack
from miabench.pipeline.table import make_table
from miabench.pipeline.train import locate_victim, train_victim
from miabench.victims.pix2pix import Pix2PixVictim
from tests.conftest import compose_cfg


class CrashAfterEpoch(pl.Callback):
    """Simulates a killed job: interrupts the run once the first epoch is checkpointed."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt  # what Lightning sees on SIGINT


class EpochRecorder(pl.Callback):
    """Records which epochs a run actually trains."""

    epochs: list[int] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        EpochRecorder.epochs.append(trainer.current_epoch)


def tiny_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "data=facades",
        f"data.root={root}",
        "data.direction=AtoB",
        "data.image_size=32",
        "data.load_size=32",
        "data.batch_size=4",
        "data.eval_batch_size=16",
        "split.n_members=8",
        "split.n_nonmembers=24",
        "victim.module.generator.num_downs=5",
        "victim.module.generator.ngf=16",
        "victim.module.generator.dropout=0.0",
        "victim.module.discriminator.ndf=8",
        "victim.module.discriminator.n_layers=2",
        "victim.module.lambda_l1=100",
        "victim.module.optimizer_g.lr=1e-3",
        "trainer.max_epochs=40",
        "trainer.enable_progress_bar=false",
        f"paths.root_dir={out}",
        "attack.membership_error.arch=resnet18",
        "attack.membership_error.weights=none",
        "evaluation.device=cpu",
        *extra,
    ]


@pytest.mark.slow
def test_overfit_victim_is_detected_and_stages_resume(
    aligned_root: Path, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "run"
    cfg = compose_cfg("run_attack", tiny_overrides(aligned_root, out))
    victim = train_victim(cfg)
    batches: list[int] = []
    signal_step = Pix2PixVictim.signal_step
    monkeypatch.setattr(
        Pix2PixVictim,
        "signal_step",
        lambda self, batch: batches.append(len(batch["sample_id"])) or signal_step(self, batch),
    )
    assert victim.weights.exists()
    manifest = pd.read_csv(victim.directory / "manifest.csv")
    assert set(manifest.role) == {"member", "nonmember"}
    assert not set(manifest[manifest.role == "member"].sha256) & set(
        manifest[manifest.role == "nonmember"].sha256
    )

    results_path = run_attack(cfg)
    # one victim pass for utility and one shared by both attacks (not one per attack)
    assert sum(batches) == 2 * 32, batches
    results = json.loads(results_path.read_text())
    rec = results["attacks"]["reconstruction"]
    # 8 memorised members vs 24 unseen images: the reconstruction error separates them.
    assert rec["auc"] > 0.8, rec
    assert results["run"]["n_members"] == 8 and results["run"]["n_nonmembers"] == 24
    assert results["generalization_gap"]["l1"] > 0  # non-members reconstructed worse
    scores = pd.read_csv(results_path.parent / "scores.csv")
    assert len(scores) == 32 and set(scores.split) == {"calibration", "test"}
    # membership error = reconstruction − predictability, scored as its negation.
    me = results["attacks"]["membership_error"]
    assert me["describe"]["weights"] == "none" and 0.0 <= me["auc"] <= 1.0
    diff = (
        scores["membership_error.reconstruction_error"]
        - scores["membership_error.predictability_error"]
    )
    assert (diff - scores["membership_error.membership_error"]).abs().max() < 1e-6
    assert (
        scores["membership_error.score"] + scores["membership_error.membership_error"]
    ).abs().max() < 1e-6
    assert (results_path.parent / "roc_loglog.png").stat().st_size > 0

    # A rerun reuses the trained victim and the finished attack.
    mtime = victim.weights.stat().st_mtime_ns
    assert train_victim(cfg).weights.stat().st_mtime_ns == mtime
    score_file = results_path.parent / "scores_reconstruction.csv"
    score_mtime = score_file.stat().st_mtime_ns
    results_path.unlink()
    assert run_attack(cfg) == results_path
    assert score_file.stat().st_mtime_ns == score_mtime  # scores read back, not recomputed

    # The table joins this run with the published pix2pix rows.
    table_cfg = compose_cfg(
        "make_table",
        [
            f"paths.root_dir={out}",
            "table=embedded_pix2pix",
            f"table.results=[{results_path}]",
        ],
    )
    md, csv = make_table(table_cfg)
    frame = pd.read_csv(csv)
    row = frame[frame.dataset == "facades"]
    assert len(row) >= 1
    assert "0.9362" in md.read_text()  # the published pix2pix/facades AUC


@pytest.mark.slow
def test_killed_training_resumes_from_last_checkpoint(aligned_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # With the learning-rate decay on, the scheduler's state is in the checkpoint too.
    base = tiny_overrides(
        aligned_root, out, "trainer.max_epochs=3", "victim.module.n_epochs_decay=2"
    )
    crash = "+callbacks.crash._target_=tests.pipeline.test_end_to_end.CrashAfterEpoch"
    # Lightning shuts down gracefully on Ctrl-C and exits the process.
    with pytest.raises((SystemExit, RuntimeError)):
        train_victim(compose_cfg("train_victim", [*base, crash]))
    victim = locate_victim(compose_cfg("train_victim", base))
    assert not victim.weights.exists()
    assert (victim.directory / "checkpoints" / "last.ckpt").exists()

    # Callbacks are not part of the cache key, so the same cache folder is found, and the
    # training continues after the epoch the killed run finished.
    EpochRecorder.epochs = []
    record = "+callbacks.record._target_=tests.pipeline.test_end_to_end.EpochRecorder"
    resumed = train_victim(compose_cfg("train_victim", [*base, record]))
    assert resumed.directory == victim.directory
    assert EpochRecorder.epochs == [1, 2]
    meta = json.loads((resumed.directory / "victim.json").read_text())
    assert meta["epochs"] == 3
    assert not (resumed.directory / "checkpoints").exists()
