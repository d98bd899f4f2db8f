"""Early stopping stops on the validation split (disjoint from members and non-members);
paired augmentation keeps input and target aligned and touches only the training loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision.transforms import v2

from miabench.data.membership import Manifest
from miabench.defenses.augmentation import Augmentation, PairedTransform
from miabench.defenses.base import DefenseNotApplicable
from miabench.defenses.early_stopping import EarlyStopping
from tests.defenses.conftest import TinySegVictim, datamodule, fit, tiny_pix2pix


def test_validation_split_is_disjoint_and_served(aligned_root: Path) -> None:
    dm = datamodule(aligned_root, n_validation=6)
    manifest: Manifest = dm.manifest
    validation = set(manifest.ids("validation"))
    assert len(validation) == 6
    assert not validation & set(manifest.ids("member"))
    assert not validation & set(manifest.ids("nonmember"))
    hashes = {r.sha256 for r in manifest.records("validation")}
    others = {r.sha256 for role in ("member", "nonmember") for r in manifest.records(role)}
    assert not hashes & others
    served = [i for b in dm.val_dataloader() for i in b["sample_id"]]
    assert sorted(served) == sorted(validation)
    assert datamodule(aligned_root).val_dataloader() == []  # no split, no validation


class DivergingValidation(TinySegVictim):
    """Validation loss rises every epoch: early stopping must stop after `patience`."""

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.log("val/loss", float(self.current_epoch), batch_size=len(batch["sample_id"]))


def test_early_stopping_stops_on_validation(aligned_root: Path) -> None:
    dm = datamodule(aligned_root, n_validation=4)
    defense = EarlyStopping(monitor="val/loss", patience=2)
    trainer = fit(defense, DivergingValidation(), dm, max_epochs=20)
    report = defense.report()
    assert report["stopped_early"] and report["n_validation"] == 4
    assert trainer.current_epoch == 3  # best at epoch 0, two worse epochs, stop


def test_pix2pix_logs_validation_metrics_for_early_stopping(aligned_root: Path) -> None:
    dm = datamodule(aligned_root, n_validation=4)
    defense = EarlyStopping(monitor="val/l1", patience=50)
    trainer = fit(defense, tiny_pix2pix(), dm, max_epochs=2)
    assert {"val/l1", "val/psnr", "val/ssim"} <= set(trainer.callback_metrics)
    assert defense.report()["best_score"] == pytest.approx(
        float(trainer.callback_metrics["val/l1"]), abs=1.0
    )


def test_early_stopping_needs_a_validation_split(dm: Any) -> None:
    with pytest.raises(DefenseNotApplicable, match="split.n_validation"):
        EarlyStopping(monitor="val/loss").prepare_datamodule(dm)


def test_paired_transform_keeps_image_and_mask_aligned() -> None:
    torch.manual_seed(0)
    image = torch.rand(3, 32, 32)
    transform = PairedTransform(
        v2.Compose(
            [
                v2.RandomResizedCrop(32, scale=(0.3, 0.6)),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(30),
            ]
        )
    )
    for _ in range(5):
        out = transform({"sample_id": "a", "input": image, "target": image.clone()})
        assert out["sample_id"] == "a"
        assert not torch.equal(out["input"], image)
        assert torch.equal(out["input"], out["target"])  # the same crop, flip, rotation
    mask = (image[0] > 0.5).long()
    out = transform({"sample_id": "m", "input": image, "target": mask})
    assert out["target"].dtype == torch.long
    assert set(out["target"].unique().tolist()) <= {0, 1}  # nearest: no blended labels


def test_augmentation_only_changes_training_batches(dm: Any) -> None:
    defense = Augmentation(v2.Compose([v2.RandomVerticalFlip(p=1.0)]))
    wrapped = defense.prepare_datamodule(dm)
    plain = {
        i: x for b in dm.train_dataloader() for i, x in zip(b["sample_id"], b["input"], strict=True)
    }
    seen = {
        i: x
        for b in wrapped.train_dataloader()
        for i, x in zip(b["sample_id"], b["input"], strict=True)
    }
    assert seen.keys() == plain.keys()
    # the dataset's own random horizontal flip still applies, so compare up to it
    for i, x in seen.items():
        assert torch.equal(x, plain[i].flip(-2)) or torch.equal(x, plain[i].flip(-2).flip(-1))
    member = next(iter(wrapped.member_dataloader()))  # evaluation loaders untouched
    first = next(iter(dm.member_dataloader()))
    assert torch.equal(member["input"], first["input"])
    trained = fit(defense, tiny_pix2pix(), dm)
    assert trained.global_step > 0


def test_wrapped_datamodule_without_validation_skips_it(dm: Any) -> None:
    import lightning.pytorch as pl

    from miabench.defenses.base import WrappedDataModule

    class TrainOnly(pl.LightningDataModule):
        def train_dataloader(self) -> Any:
            return dm.train_dataloader()

    assert WrappedDataModule(TrainOnly(), lambda loader: loader).val_dataloader() == []
    with_validation = WrappedDataModule(dm, lambda loader: loader)
    assert with_validation.val_dataloader() == dm.val_dataloader()
    assert with_validation.manifest is dm.manifest  # everything else is delegated
