"""MINT's published protocol end to end: a released backbone (a checkpoint written in
InsightFace's key layout) is audited as is, with non-members from an external face set.

Members are images of the "training set" (noise images in identity folders); the external
set is rendered differently (smooth, darker images, as another dataset's camera and
preprocessing would differ). The victim never saw either, so whatever the auditor scores is
dataset shift; this is exactly what the published protocol cannot tell from membership.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from miabench.pipeline.attack import run_attack
from miabench.pipeline.train import train_victim
from miabench.utils.hashing import sha256_file
from tests.conftest import compose_cfg
from tests.pipeline.test_mint_pipeline import write_faces
from tests.victims.test_released_checkpoint import write_insightface_checkpoint


def write_external(root: Path, n_ids: int = 12, per_id: int = 10, seed: int = 1) -> None:
    """root/<identity>/<k>.png: smooth, darker images (another source's rendering)."""
    rng = np.random.default_rng(seed)
    for i in range(n_ids):
        folder = root / f"ext{i:02d}"
        folder.mkdir(parents=True)
        for k in range(per_id):
            coarse = rng.integers(0, 128, (4, 4), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((16, 16), Image.BILINEAR)
            image.save(folder / f"{k:02d}.png")


@pytest.mark.slow
def test_released_checkpoint_audited_with_external_nonmembers(tmp_path: Path) -> None:
    write_faces(tmp_path / "train_set", n_ids=12, per_id=10)
    write_external(tmp_path / "external")
    weights = tmp_path / "backbone.pth"
    state = write_insightface_checkpoint(weights)
    overrides = [
        "data=faces_folder",
        f"data.root={tmp_path / 'train_set'}",
        "data.image_size=16",
        "data.channels=1",
        "data.n_member_identities=12",  # a released model's members: all of its identities
        "data.n_nonmember_identities=0",
        f"+data.nonmembers=[{{name: ext, root: '{tmp_path / 'external'}', layout: folder}}]",
        "data.num_workers=0",
        "data.eval_batch_size=64",
        "split.n_members=120",
        "split.n_nonmembers=120",
        "victim=iresnet_test",
        f"victim.net.weights={weights}",
        "victim.module.head=null",
        "trainer.max_epochs=0",  # audited as is
        "attack=mint_protocols",
        "mint.n_train=1000",
        "mint.mlp_epochs=20",
        "trainer.enable_progress_bar=false",
        "evaluation.device=cpu",
        "evaluation.bootstrap=100",
        "evaluation.calibration_by_group=true",
        "evaluation.bootstrap_by_group=true",
        f"paths.root_dir={tmp_path / 'out'}",
    ]
    cfg = compose_cfg("run_attack", overrides)
    cfg.attack = {name: cfg.attack[name] for name in ("mint_mlp_all_conv", "nearest_identity")}
    victim = train_victim(cfg)
    results = json.loads(run_attack(cfg, victim).read_text())

    # the audited weights are the file's, untouched by the (zero-epoch) training stage
    audited = torch.load(victim.weights, weights_only=True)
    assert all(torch.equal(audited[f"backbone.{k}"], v) for k, v in state.items())
    assert results["run"]["victim_epochs"] == 0
    assert results["run"]["victim_info"]["weights_sha256"] == sha256_file(weights)
    manifest = pd.read_csv(victim.directory / "manifest.csv")
    nonmembers = manifest[manifest.role == "nonmember"].sample_id
    assert len(nonmembers) == 120 and nonmembers.str.contains(r"^ext\d\d@ext/").all()
    assert not manifest[manifest.role == "member"].sample_id.str.contains("@").any()
    # a never-trained-on-either network tells the two sources apart: dataset shift
    mint = results["attacks"]["mint_mlp_all_conv"]
    assert mint["auc"] > 0.9 and mint["n_test_groups"] >= 4
    assert np.isnan(results["utility"]["member"]["identification"])
