"""MINT through the three stages on a tiny identity-per-folder set of noise images.

An IResNet overfit on the member identities is audited well above chance by the MINT MLP on
held-out auditable data; the same architecture never trained on either set is at chance. The
membership split, identity disjointness and reporting are checked on the way.

Every image is independent noise, so the data carry no class or identity structure that an
auditor could pick up instead of membership (the confound that put the Fashion-MNIST proxy
below chance before its identities were stratified by class, see docs/mint.md). Few member
identities with many images each (5 x 48) give the auditor many calibration samples of every
direction the victim learned; with 30 identities of 8 images it had ~3 per identity and
stayed at chance (overfit 0.46, untrained 0.55).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from miabench.pipeline.attack import run_attack
from miabench.pipeline.train import train_victim
from tests.conftest import compose_cfg

#: the auditor the assertions are about (model outcome = the embedding, Vanilla MINT)
AUDITOR = "mint_mlp_embedding"


def write_faces(
    root: Path, n_ids: int = 35, per_id: int = 48, size: int = 16, seed: int = 0
) -> None:
    """root/<identity>/<k>.png, every image independent noise: identities share nothing an
    auditor could recognise, so whatever separates members from non-members is what the
    victim did with its training images (it can only memorise them)."""
    rng = np.random.default_rng(seed)
    for i in range(n_ids):
        folder = root / f"id{i:03d}"
        folder.mkdir(parents=True)
        for k in range(per_id):
            image = rng.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{k:03d}.png")


def faces_overrides(root: Path, *extra: str) -> list[str]:
    """A tiny MINT run on the identity folders at ``root``: 16x16 grey faces, iresnet_test."""
    return [
        "data=faces_folder",
        f"data.root={root}",
        "data.image_size=16",
        "data.channels=1",
        "data.n_member_identities=5",
        "data.n_nonmember_identities=30",
        "data.batch_size=16",
        "data.eval_batch_size=64",
        "data.num_workers=0",
        "split.n_members=200",
        "split.n_nonmembers=200",
        "victim=iresnet_test",
        "attack=mint",
        "mint.n_train=1000",  # all of the calibration half
        "mint.mlp_epochs=60",
        "mint.l1=0.001",
        "trainer.enable_progress_bar=false",
        "evaluation.device=cpu",
        "evaluation.bootstrap=200",
        "evaluation.bootstrap_by_group=true",
        *extra,
    ]


def _audit(root: Path, out: Path, epochs: int) -> tuple[dict, Path]:
    cfg = compose_cfg(
        "run_attack", faces_overrides(root, f"trainer.max_epochs={epochs}"), root_dir=out
    )
    # three auditors keep the test short: the asserted one, all conv layers (printed) and the
    # nearest-identity diagnostic
    cfg.attack = {
        name: cfg.attack[name] for name in (AUDITOR, "mint_mlp_all_conv", "nearest_identity")
    }
    victim = train_victim(cfg)
    results = json.loads(run_attack(cfg, victim).read_text())
    return results, victim.directory


@pytest.mark.slow
def test_mint_detects_an_overfit_victim_and_not_an_untrained_one(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    write_faces(root)
    trained, directory = _audit(root, tmp_path / "trained", epochs=60)
    untrained, _ = _audit(root, tmp_path / "untrained", epochs=0)

    manifest = pd.read_csv(directory / "manifest.csv")
    identity = manifest.sample_id.str.split("/").str[0]
    members, nonmembers = manifest.role == "member", manifest.role == "nonmember"
    assert not set(identity[members]) & set(identity[nonmembers])  # disjoint by identity
    assert not set(manifest.sha256[members]) & set(manifest.sha256[nonmembers])

    t, u = trained["attacks"][AUDITOR], untrained["attacks"][AUDITOR]
    run_dir = next((tmp_path / "trained" / "outputs" / "attacks").iterdir())
    scores = pd.read_csv(run_dir / "scores.csv")
    # By-sample auditor halves: test members belong to identities the auditor saw, but the
    # images are independent noise, so nothing identity-specific can leak through the
    # pixels; only what the victim learned from its training images can.
    test = scores[scores.split == "test"]
    assert t["n_test"] == len(test) > 100
    assert abs(test.label.mean() - 0.5) < 0.05  # balanced held-out auditable data
    assert (
        t["describe"]["n_train_members"] == (scores[scores.split == "calibration"].label == 1).sum()
    )
    for name in (AUDITOR, "mint_mlp_all_conv", "nearest_identity"):
        a, b = trained["attacks"][name], untrained["attacks"][name]
        print(
            f"\n{name}: overfit acc {a['accuracy_at_decision']:.3f} AUC {a['auc']:.3f}, "
            f"untrained acc {b['accuracy_at_decision']:.3f} AUC {b['auc']:.3f}"
        )
    assert t["accuracy_at_decision"] > 0.65 and t["auc"] > 0.7
    # identity-bootstrap CI around the test AUC: above chance for the overfit victim
    low, high = t["auc_ci95"]
    assert t["bootstrap_unit"] == "group"
    assert 0.5 < low <= t["auc"] <= high and 30 <= t["n_test_groups"] <= 35
    assert abs(u["accuracy_at_decision"] - 0.5) < 0.12 and abs(u["auc"] - 0.5) < 0.15
    # the diagnostic saw the same N balanced calibration samples as the MINT auditors
    nearest = trained["attacks"]["nearest_identity"]["describe"]
    assert nearest["n_train_members"] == t["describe"]["n_train_members"]
    assert nearest["member_identities"] == 5  # every member identity is in the by-sample half
    # the victim recognises its identities (identification accuracy of members)
    assert trained["utility"]["member"]["identification"] > 0.9
    verification = trained["utility"]["member"]["verification"]
    assert (
        verification["verification_accuracy"]
        > untrained["utility"]["member"]["verification"]["verification_accuracy"]
    )
