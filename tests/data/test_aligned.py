"""The pix2pix aligned layout: items, directions, paired augmentation, malformed folders."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import miabench.data.aligned as aligned
from miabench.data.aligned import AlignedDataset
from miabench.utils.hashing import sha256_array
from tests.conftest import write_aligned


def write_pair(path: Path, a: np.ndarray, b: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([a, b], axis=1)).save(path)


def test_items_are_unit_range_rgb_pairs(aligned_root: Path) -> None:
    dataset = AlignedDataset(aligned_root, "train")
    assert len(dataset) == 48
    item = dataset[3]
    assert item["sample_id"] == "train/0003.png"
    for key in ("input", "target"):
        assert item[key].dtype == torch.float32 and item[key].shape == (3, 32, 32)
        assert 0.0 <= item[key].min() and item[key].max() <= 1.0


def test_direction_swaps_halves(tmp_path: Path) -> None:
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 255, np.uint8)
    write_pair(tmp_path / "d" / "val" / "x.png", a, b)
    atob = AlignedDataset(tmp_path / "d", "val", direction="AtoB")[0]
    btoa = AlignedDataset(tmp_path / "d", "val", direction="BtoA")[0]
    assert atob["input"].max() == 0 and atob["target"].min() == 1
    assert torch.equal(btoa["input"], atob["target"])
    assert torch.equal(btoa["target"], atob["input"])
    with pytest.raises(ValueError, match="direction"):
        AlignedDataset(tmp_path / "d", "val", direction="AB")


def test_resize_without_augment(aligned_root: Path) -> None:
    item = AlignedDataset(aligned_root, "test", load_size=40, crop_size=16)[0]
    assert item["input"].shape == (3, 16, 16) and item["target"].shape == (3, 16, 16)
    assert 0.0 <= item["target"].min() and item["target"].max() <= 1.0


def test_grayscale_files_become_rgb(tmp_path: Path) -> None:
    folder = tmp_path / "g" / "train"
    folder.mkdir(parents=True)
    Image.fromarray(np.arange(128, dtype=np.uint8).reshape(8, 16)).save(folder / "g.png")
    item = AlignedDataset(tmp_path / "g", "train")[0]
    assert item["input"].shape == (3, 8, 8)


def test_augment_keeps_a_and_b_aligned(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "same"
    for i in range(4):
        # A == B, with structure in every direction so any misalignment shows.
        a = (rng.random((24, 24, 3)) * 255).astype(np.uint8)
        write_pair(root / "train" / f"{i}.png", a, a)
    dataset = AlignedDataset(root, "train", load_size=30, crop_size=20, augment=True)
    outputs = set()
    torch.manual_seed(0)
    for _ in range(10):
        for i in range(len(dataset)):
            item = dataset[i]
            assert item["input"].shape == (3, 20, 20)
            assert torch.equal(item["input"], item["target"])
            if i == 0:
                outputs.add(sha256_array(item["input"].numpy()))
    assert len(outputs) > 1, "crop/flip never changed: augmentation is not random"


def test_crop_larger_than_load_size_names_file(aligned_root: Path) -> None:
    dataset = AlignedDataset(aligned_root, "train", load_size=16, crop_size=20, augment=True)
    with pytest.raises(ValueError, match="0000.png.*crop_size 20"):
        dataset[0]


def test_missing_root_and_phase_name_the_path(aligned_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        AlignedDataset(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match=r"val.*\['test', 'train'\]"):
        AlignedDataset(aligned_root, "val")


def test_empty_phase_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "e" / "train").mkdir(parents=True)
    (tmp_path / "e" / "train" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match="no images"):
        AlignedDataset(tmp_path / "e", "train")


def test_odd_width_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "odd"
    write_aligned(root, "train", 2)
    bad = root / "train" / "odd.png"
    Image.new("RGB", (33, 16)).save(bad)
    dataset = AlignedDataset(root, "train")
    with pytest.raises(ValueError, match=re.escape(f"{bad}: width 33 is odd")):
        dataset.records()
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        dataset[2]


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_file_names_the_file(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "corrupt"
    paths = write_aligned(root, "train", 2)
    bad = root / "train" / "bad.png"
    if kind == "garbage":
        bad.write_bytes(b"definitely not a png")
    else:
        bad.write_bytes(paths[0].read_bytes()[:200])
    dataset = AlignedDataset(root, "train")
    with pytest.raises(ValueError, match=re.escape(f"{bad}: unreadable or corrupt")):
        dataset.records()


def test_records_hash_decoded_pixels_once(aligned_root: Path, monkeypatch) -> None:
    # The same pixels as another file, in another format: equal content hash.
    Image.open(aligned_root / "train" / "0000.png").save(aligned_root / "train" / "zcopy.bmp")
    dataset = AlignedDataset(aligned_root, "train")
    records = dataset.records()
    by_id = {r.sample_id: r for r in records}
    assert by_id["train/zcopy.bmp"].sha256 == by_id["train/0000.png"].sha256
    pixels = np.asarray(Image.open(aligned_root / "train" / "0005.png").convert("RGB"))
    assert by_id["train/0005.png"].sha256 == sha256_array(pixels)
    assert by_id["train/0005.png"].path == str(aligned_root / "train" / "0005.png")

    def fail(path: Path) -> np.ndarray:
        raise AssertionError("records() decoded the files twice")

    monkeypatch.setattr(aligned, "read_rgb", fail)
    assert dataset.records() == records


def test_subset_keeps_order_and_refuses_unknown_ids(aligned_root: Path) -> None:
    dataset = AlignedDataset(aligned_root, "train")
    ids = ["train/0007.png", "train/0002.png"]
    view = dataset.subset(ids)
    assert len(view) == 2 and [view[i]["sample_id"] for i in range(2)] == ids
    assert [r.sample_id for r in view.records()] == ids
    assert len(dataset) == 48
    with pytest.raises(ValueError, match="test/0001.png"):
        dataset.subset(["train/0001.png", "test/0001.png"])
