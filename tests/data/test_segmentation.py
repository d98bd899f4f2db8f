"""Segmentation readers on tiny datasets written in each published layout, and the
embedded Fashion-MNIST composites."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import miabench.data.embedded.composites as composites
from miabench.data.datamodule import MembershipDataModule
from miabench.data.embedded.build import COMPLETE_MARKER
from miabench.data.embedded.composites import build_fashion_polyps, build_fashion_scenes
from miabench.data.embedded.fashion_mnist import ENV_DIR
from miabench.data.segmentation import (
    ADE20KDataset,
    CityscapesSegDataset,
    CovidSemiSegDataset,
    PolypDataset,
)
from miabench.data.segmentation_base import instance_edges
from tests.data.test_fashion_mnist import fake_items, write_idx


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _image(rng: np.random.Generator, h: int = 16, w: int = 20) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_ade(root: Path, n: int = 4, labels: list[np.ndarray] | None = None) -> Path:
    """``ADEChallengeData2016/{images,annotations}/{training,validation}`` with n files each."""
    rng = np.random.default_rng(0)
    base = root / "ADEChallengeData2016"
    for phase, prefix in (("training", "ADE_train_"), ("validation", "ADE_val_")):
        for i in range(n):
            stem = f"{prefix}{i + 1:08d}"
            _save(base / "images" / phase / f"{stem}.jpg", _image(rng))
            lab = labels[i] if labels else rng.integers(0, 151, (16, 20)).astype(np.uint8)
            _save(base / "annotations" / phase / f"{stem}.png", lab)
    return root


def test_ade20k_reduce_zero_label_and_ids(tmp_path: Path) -> None:
    lab = np.zeros((16, 20), np.uint8)
    lab[:, 5:] = 1
    lab[:, 10:] = 150
    root = write_ade(tmp_path / "ade", labels=[lab] * 4)
    ds = ADE20KDataset(root, "train")  # alias of training
    item = ds[0]
    assert item["sample_id"] == "training/ADE_train_00000001"
    assert item["input"].shape == (3, 16, 20) and item["input"].dtype == torch.float32
    assert 0.0 <= item["input"].min() and item["input"].max() <= 1.0
    target = item["target"]
    assert target.dtype == torch.int64
    assert (target[:, :5] == 255).all() and (target[:, 5:10] == 0).all()
    assert (target[:, 10:] == 149).all()
    raw = ADE20KDataset(root, "validation", num_classes=151, reduce_zero_label=False)[0]["target"]
    assert set(raw.unique().tolist()) == {0, 1, 150}


def test_ade20k_errors_name_the_file(tmp_path: Path) -> None:
    bad = np.full((16, 20), 151, np.uint8)
    root = write_ade(tmp_path / "ade", labels=[bad] * 4)
    with pytest.raises(ValueError, match=r"ADE_train_00000001\.png.*151"):
        ADE20KDataset(root, "training")[0]
    root = write_ade(tmp_path / "ade2")
    (root / "ADEChallengeData2016/annotations/training/ADE_train_00000003.png").unlink()
    with pytest.raises(FileNotFoundError, match="ADE_train_00000003.jpg"):
        ADE20KDataset(root, "training")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ADE20KDataset(tmp_path / "nowhere", "training")
    with pytest.raises(FileNotFoundError, match="images/testing"):
        ADE20KDataset(root, "testing")


def test_resize_crop_flip_keep_labels_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = [rng.integers(1, 6, (16, 20)).astype(np.uint8) for _ in range(4)]
    root = write_ade(tmp_path / "ade", labels=labels)
    plain = ADE20KDataset(root, "training", image_size=8)[0]
    assert plain["input"].shape == (3, 8, 8) and plain["target"].shape == (8, 8)
    aug = ADE20KDataset(root, "training", image_size=8, load_size=12, augment=True)
    for _ in range(5):
        item = aug[1]
        assert item["target"].shape == (8, 8)
        # nearest neighbour: no label that is not in the file appears
        assert set(item["target"].unique().tolist()) <= set((labels[1] - 1).reshape(-1).tolist())


def test_label2photo_items_are_one_hot(tmp_path: Path) -> None:
    root = write_ade(tmp_path / "ade")
    seg = ADE20KDataset(root, "training")[2]
    photo = ADE20KDataset(root, "training", task="label2photo")[2]
    assert photo["sample_id"] == seg["sample_id"]
    assert photo["input"].shape == (150, 16, 20)
    assert torch.equal(photo["target"], seg["input"])
    ignored = seg["target"] == 255
    assert (photo["input"].sum(0) == (~ignored).float()).all()
    assert torch.equal(photo["input"].argmax(0)[~ignored], seg["target"][~ignored])
    with pytest.raises(ValueError, match="task"):
        ADE20KDataset(root, "training", task="detection")


def write_cityscapes(root: Path, label: np.ndarray, instance: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    for phase in ("train", "val"):
        for city, frame in (("aachen", "000000_000019"), ("bonn", "000001_000019")):
            stem = f"{city}_{frame}"
            _save(root / "leftImg8bit" / phase / city / f"{stem}_leftImg8bit.png", _image(rng))
            _save(root / "gtFine" / phase / city / f"{stem}_gtFine_labelIds.png", label)
            inst = Image.fromarray(instance.astype(np.uint16))  # 16-bit PNG like the real files
            inst.save(root / "gtFine" / phase / city / f"{stem}_gtFine_instanceIds.png")
    return root


def test_cityscapes_train_ids_and_boundaries(tmp_path: Path) -> None:
    label = np.zeros((16, 20), np.uint8)
    label[:, 5:10], label[:, 10:15], label[:, 15:] = 7, 26, 33
    instance = np.zeros((16, 20), np.int32)
    instance[:8, 10:15], instance[8:, 10:15] = 26000, 26001
    root = write_cityscapes(tmp_path / "cs", label, instance)
    ds = CityscapesSegDataset(root, "train")
    assert len(ds) == 2
    item = ds[0]
    assert item["sample_id"] == "train/aachen/aachen_000000_000019"
    t = item["target"]
    assert (t[:, :5] == 255).all() and (t[:, 5:10] == 0).all()
    assert (t[:, 10:15] == 13).all() and (t[:, 15:] == 18).all()

    photo = CityscapesSegDataset(root, "val", task="label2photo", boundary=True)[0]
    assert photo["input"].shape == (20, 16, 20)
    edges = photo["input"][19]
    assert torch.equal(edges, instance_edges(torch.from_numpy(instance.astype(np.int64))))
    assert edges[7:9, 11:14].eq(1).all() and edges[0, 0] == 0  # the instance border
    assert (photo["input"][:19].sum(0)[:, :5] == 0).all()  # ignored pixels: all-zero

    bad = label.copy()
    bad[0, 0] = 40
    root2 = write_cityscapes(tmp_path / "cs2", bad, instance)
    with pytest.raises(ValueError, match="labelIds"):
        CityscapesSegDataset(root2, "train")[0]
    (root2 / "gtFine/train/bonn/bonn_000001_000019_gtFine_instanceIds.png").unlink()
    with pytest.raises(FileNotFoundError, match="instanceIds"):
        CityscapesSegDataset(root2, "train", task="label2photo", boundary=True)


def write_binary(images: Path, masks: Path, n: int, ext: str = ".png", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        _save(images / f"{i:03d}.jpg", _image(rng))
        mask = np.zeros((16, 20), np.uint8)
        mask[4:12, 3 + i : 10 + i] = 255
        _save(masks / f"{i:03d}{ext}", mask)


def test_polyp_layout_and_mask_checks(tmp_path: Path) -> None:
    root = tmp_path / "polyp"
    write_binary(root / "TrainDataset/images", root / "TrainDataset/masks", 5, ".jpg")
    write_binary(root / "TestDataset/Kvasir/images", root / "TestDataset/Kvasir/masks", 3, seed=1)
    train = PolypDataset(root, "train")
    item = train[1]
    assert item["sample_id"] == "train/001"
    assert set(item["target"].unique().tolist()) == {0, 1}
    assert item["target"][4:12, 4:11].eq(1).float().mean() > 0.9  # JPEG mask thresholded
    test = PolypDataset(root, "test")
    assert len(test) == 3 and test[0]["sample_id"] == "test/000"
    assert len(PolypDataset(root, "Kvasir")) == 3

    grey = np.full((16, 20), 128, np.uint8)
    _save(root / "TestDataset/Kvasir/masks/002.png", grey)
    with pytest.raises(ValueError, match=r"002\.png.*binary"):
        PolypDataset(root, "test")[2]
    (root / "TrainDataset/masks/004.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="004.jpg"):
        PolypDataset(root, "train")
    with pytest.raises(FileNotFoundError, match="CVC"):
        PolypDataset(root, "CVC-ClinicDB")


def test_covid_semiseg_layout(tmp_path: Path) -> None:
    root = tmp_path / "covid"
    train = root / "TrainingSet/LungInfection-Train/Doctor-label"
    test = root / "TestingSet/LungInfection-Test"
    write_binary(train / "Imgs", train / "GT", 4)
    write_binary(test / "Imgs", test / "GT", 2)
    ds = CovidSemiSegDataset(root, "train", image_size=8)
    assert len(ds) == 4 and ds[0]["target"].shape == (8, 8)
    assert len(CovidSemiSegDataset(root, "test")) == 2
    with pytest.raises(ValueError, match="phase"):
        CovidSemiSegDataset(root, "validation")


def test_records_subset_and_membership_split(tmp_path: Path) -> None:
    root = write_ade(tmp_path / "ade", n=6)
    ds = ADE20KDataset(root, "training")
    records = ds.records()
    assert len({r.sha256 for r in records}) == 6
    ids = [records[4].sample_id, records[1].sample_id]
    view = ds.subset(ids)
    assert [view[i]["sample_id"] for i in range(2)] == ids
    with pytest.raises(ValueError, match="not in"):
        ds.subset(["training/nope"])

    def factory(phase: str, augment: bool) -> ADE20KDataset:
        return ADE20KDataset(root, phase, image_size=8, augment=augment)

    dm = MembershipDataModule(
        factory, "training", "validation", n_members=3, n_nonmembers=4, batch_size=3
    )
    dm.setup()
    batch = next(iter(dm.member_dataloader()))
    assert batch["target"].shape == (3, 8, 8) and batch["target"].dtype == torch.int64
    assert all(s.startswith("training/") for s in dm.manifest.ids("member"))
    assert all(s.startswith("validation/") for s in dm.manifest.ids("nonmember"))


@pytest.fixture
def fashion_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny Fashion-MNIST in Debian's layout."""
    gz = tmp_path / "debian"
    write_idx(gz, "train", fake_items(30, seed=0), np.arange(30) % 10)
    write_idx(gz, "t10k", fake_items(10, seed=1), np.arange(10) % 10)
    monkeypatch.setenv(ENV_DIR, str(gz))


def test_fashion_scenes_build(tmp_path: Path, fashion_source: None, monkeypatch) -> None:
    out = build_fashion_scenes(tmp_path / "fs", n_train=6, n_val=3, image_size=32, seed=0)
    marker = json.loads((out / COMPLETE_MARKER).read_text())
    assert marker["counts"] == {"training": 6, "validation": 3}
    ds = ADE20KDataset(out, "training", num_classes=11, reduce_zero_label=False)
    assert (
        len(ds) == 6
        and len(ADE20KDataset(out, "validation", num_classes=11, reduce_zero_label=False)) == 3
    )
    labels = torch.stack([ds[i]["target"] for i in range(6)])
    assert labels.max() <= 10 and (labels == 0).any() and (labels > 0).any()
    assert ds[0]["input"].shape == (3, 32, 32)
    # a second call reuses the build; other parameters are refused
    monkeypatch.setattr(composites, "_scene", lambda *a, **k: pytest.fail("rebuilt"))
    assert build_fashion_scenes(tmp_path / "fs", n_train=6, n_val=3, image_size=32) == out
    with pytest.raises(ValueError, match="built with"):
        build_fashion_scenes(tmp_path / "fs", n_train=7, n_val=3, image_size=32)


def test_fashion_polyps_build_is_deterministic(tmp_path: Path, fashion_source: None) -> None:
    a = build_fashion_polyps(tmp_path / "a", n_train=5, n_test=2, image_size=32, seed=3)
    b = build_fashion_polyps(tmp_path / "b", n_train=5, n_test=2, image_size=32, seed=3)
    ra = PolypDataset(a, "train").records()
    assert [r.sha256 for r in ra] == [r.sha256 for r in PolypDataset(b, "train").records()]
    test = PolypDataset(a, "test", test_set=composites.POLYP_TEST_NAME)
    assert len(test) == 2
    fg = test[0]["target"].float().mean()
    assert 0.0 < fg < 0.8
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "stray.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a finished"):
        build_fashion_polyps(tmp_path / "c", n_train=5, n_test=2, image_size=32)
