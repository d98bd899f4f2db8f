"""The five segmentation victims through the stages on tiny embedded data; an overfit
UperNet is detected; the table shows the runs beside Table 1's segmentation rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from miabench.data.embedded.fashion_mnist import ENV_DIR
from miabench.pipeline.attack import run_attack
from miabench.pipeline.table import make_table
from miabench.pipeline.train import train_victim
from tests.conftest import compose_cfg
from tests.data.test_fashion_mnist import fake_items, write_idx

EXPERIMENTS = {
    "upernet50": "embedded/upernet50_fashion_scenes",
    "upernet101": "embedded/upernet101_fashion_scenes",
    "hrnetv2": "embedded/hrnetv2_fashion_scenes",
    "pranet": "embedded/pranet_fashion_polyps",
    "infnet": "embedded/infnet_fashion_polyps",
}


@pytest.fixture
def fashion_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny Fashion-MNIST stand-in in Debian's layout."""
    gz = tmp_path / "debian"
    write_idx(gz, "train", fake_items(60, seed=0), np.arange(60) % 10)
    write_idx(gz, "t10k", fake_items(20, seed=1), np.arange(20) % 10)
    monkeypatch.setenv(ENV_DIR, str(gz))


def tiny(out: Path, experiment: str, *extra: str) -> list[str]:
    scenes = "scenes" in experiment
    n_held = "n_val" if scenes else "n_test"
    # Scenes stay at 64x64: at 32x32 the encoders' deepest maps are 1x1, where batch norm
    # over a tiny batch makes SGD diverge; the binary victims (Adam) are fine at 32x32.
    size = 64 if scenes else 32
    return [
        f"experiment={experiment}",
        f"paths.root_dir={out}",
        f"data.image_size={size}",
        "data.batch_size=4",
        "data.eval_batch_size=8",
        "data.datamodule.prepare.n_train=24",
        f"data.datamodule.prepare.{n_held}=4",
        "split.n_members=4",
        "split.n_nonmembers=4",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "attack.membership_error.arch=resnet18",
        "evaluation.device=cpu",
        *extra,
    ]


@pytest.mark.parametrize("victim", list(EXPERIMENTS))
def test_each_victim_trains_and_is_attacked(
    victim: str, fashion_source: None, tmp_path: Path
) -> None:
    cfg = compose_cfg("run_attack", tiny(tmp_path / "run", EXPERIMENTS[victim]))
    trained = train_victim(cfg)
    meta = json.loads((trained.directory / "victim.json").read_text())
    assert meta["global_step"] == 1
    results = json.loads(run_attack(cfg, trained).read_text())
    assert results["run"]["victim"] == victim
    assert results["run"]["victim_info"]["weights"] == "none"
    for attack in ("reconstruction", "membership_error"):
        assert 0.0 <= results["attacks"][attack]["auc"] <= 1.0
    assert results["attacks"]["membership_error"]["describe"]["weights"] == "none"
    utility = results["utility"]["nonmember"]
    expected = (
        ("dataset_dice", "dataset_iou", "dice", "iou")
        if victim in ("pranet", "infnet")
        else ("miou",)
    )
    for key in (*expected, "loss", "pixel_accuracy"):
        assert 0.0 <= utility[key] < float("inf"), key
    scores = pd.read_csv(Path(run_attack(cfg, trained)).parent / "scores.csv")
    diff = (
        scores["membership_error.reconstruction_error"]
        - scores["membership_error.predictability_error"]
    )
    # scores.csv stores float32: compare to its precision
    np.testing.assert_allclose(
        diff, scores["membership_error.membership_error"], rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow
def test_overfit_upernet_is_detected_and_tabled(fashion_source: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = tiny(
        out,
        EXPERIMENTS["upernet50"],
        "split.n_members=6",
        "split.n_nonmembers=18",
        "data.batch_size=3",
        "trainer.max_epochs=60",
        "victim.module.net.decoder_channels=32",
    )
    cfg = compose_cfg("run_attack", overrides)
    results_path = run_attack(cfg, train_victim(cfg))
    results = json.loads(results_path.read_text())
    # six memorised scenes vs eighteen unseen ones: the per-pixel loss separates them
    assert results["attacks"]["reconstruction"]["auc"] > 0.8, results["attacks"]
    assert results["attacks"]["membership_error"]["auc"] > 0.8, results["attacks"]
    assert results["generalization_gap"]["loss"] > 0

    table_cfg = compose_cfg(
        "make_table",
        [f"paths.root_dir={out}", "table=embedded_segmentation", f"table.results=[{results_path}]"],
    )
    md, csv = make_table(table_cfg)
    frame = pd.read_csv(csv)
    run = frame[frame.dataset == "fashion_scenes"].iloc[0]
    assert run.victim == "upernet50" and run.nonmember_miou == pytest.approx(
        results["utility"]["nonmember"]["miou"]
    )
    published = frame[(frame.victim == "upernet50") & (frame.dataset == "ade20k")]
    assert published.membership_error_auc_published.item() == pytest.approx(0.9809)
    assert set(frame.victim) == set(EXPERIMENTS)  # the published rows of the five victims
    assert "pix2pix" not in md.read_text()
