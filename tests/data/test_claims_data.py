"""Data options of the Shafran et al. claims (results/shafran2021_claims/): the identity
tasks of the aligned layout, the class-count knob of the embedded scenes, and the garments
with their Fashion-MNIST class for the classifier victim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from miabench.data.aligned import AlignedDataset
from miabench.data.embedded.composites import FashionScenesDataset, build_fashion_scenes, item_group
from miabench.data.embedded.fashion_classes import FashionClassesDataset
from miabench.data.embedded.fashion_mnist import ENV_DIR, build_edges2fashion
from miabench.data.membership import make_split
from miabench.data.segmentation import ADE20KDataset
from tests.data.test_fashion_mnist import fake_items, write_idx


def test_aligned_directions_serve_the_halves_they_name(aligned_root: Path) -> None:
    views = {d: AlignedDataset(aligned_root, "train", d) for d in ("AtoB", "BtoA", "AtoA", "BtoB")}
    a, b = views["AtoB"][3]["input"], views["AtoB"][3]["target"]
    assert not torch.equal(a, b)
    assert torch.equal(views["BtoA"][3]["input"], b) and torch.equal(views["BtoA"][3]["target"], a)
    for direction, half in (("AtoA", a), ("BtoB", b)):
        item = views[direction][3]
        assert torch.equal(item["input"], half) and torch.equal(item["target"], half)
        # input and target are separate tensors: a transform of one cannot alter the other
        assert item["input"].data_ptr() != item["target"].data_ptr()
    # every direction reads the same files, so a split drawn on one holds for all
    digests = {d: [r.sha256 for r in v.records()] for d, v in views.items()}
    assert len({tuple(v) for v in digests.values()}) == 1
    with pytest.raises(ValueError, match="direction must be one of"):
        AlignedDataset(aligned_root, "train", "BtoC")


def test_item_group_merges_consecutive_classes() -> None:
    classes = np.arange(10)
    assert item_group(classes, 11).tolist() == list(range(1, 11))  # every class kept
    assert item_group(classes, 2).tolist() == [1] * 10  # item vs background
    assert item_group(classes, 3).tolist() == [1] * 5 + [2] * 5
    assert item_group(classes, 6).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    for k in (1, 12):
        with pytest.raises(ValueError, match="data.num_classes must be in 2..11"):
            item_group(classes, k)


@pytest.fixture
def scenes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    gz = tmp_path / "debian"
    write_idx(gz, "train", fake_items(30, seed=0), np.arange(30) % 10)
    write_idx(gz, "t10k", fake_items(10, seed=1), np.arange(10) % 10)
    monkeypatch.setenv(ENV_DIR, str(gz))
    return build_fashion_scenes(tmp_path / "fs", n_train=12, n_val=3, image_size=32, seed=0)


def test_fashion_scenes_class_count(scenes: Path) -> None:
    full = ADE20KDataset(scenes, "training", num_classes=11, reduce_zero_label=False)
    knob = {k: FashionScenesDataset(scenes, "training", num_classes=k) for k in (2, 3, 11)}
    for i in range(len(full)):
        truth = full[i]["target"]
        # 11 classes: what fashion_scenes serves
        assert torch.equal(knob[11][i]["target"], truth)
        # fewer: the same pixels, item classes merged by item_group, background kept
        expected = torch.where(
            truth == 0, 0, torch.as_tensor(item_group((truth - 1).clamp_min(0).numpy(), 3))
        )
        assert torch.equal(knob[3][i]["target"], expected)
        assert torch.equal(knob[2][i]["target"], (truth > 0).long())
        assert torch.equal(knob[2][i]["input"], full[i]["input"])
    seen = torch.cat([knob[3][i]["target"].flatten() for i in range(len(full))])
    assert set(seen.unique().tolist()) == {0, 1, 2}
    # the same images and sample ids, so the same split at every class count
    splits = [
        make_split(d.records(), d.records(), 4, 6, seed=0).ids("member")
        for d in (full, knob[2], knob[3])
    ]
    assert splits[0] == splits[1] == splits[2]
    with pytest.raises(ValueError, match="reduce_zero_label must be false"):
        FashionScenesDataset(scenes, "training", num_classes=3, reduce_zero_label=True)


def test_fashion_scenes_refuses_labels_outside_the_build(scenes: Path) -> None:
    ds = FashionScenesDataset(scenes, "training", num_classes=3)
    with pytest.raises(ValueError, match="outside 0..10"):
        ds._labels(np.array([[0, 11]], dtype=np.uint8), Path("x.png"))


def test_fashion_classes_serve_garments_with_their_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_labels = (np.arange(24) * 7) % 10
    gz = tmp_path / "debian"
    write_idx(gz, "train", fake_items(24, seed=0), train_labels)
    write_idx(gz, "t10k", fake_items(8, seed=1), np.arange(8) % 10)
    monkeypatch.setenv(ENV_DIR, str(gz))
    root = build_edges2fashion(tmp_path / "edges2fashion", n_train=10, n_test=4, image_size=32)
    pairs = AlignedDataset(root, "train", "AtoB")
    classes = FashionClassesDataset(root, "train")
    assert len(classes) == 10
    for i in range(len(classes)):
        item = classes[i]
        assert item["sample_id"] == pairs[i]["sample_id"]
        assert torch.equal(item["input"], pairs[i]["target"])  # the garment half
        index = int(Path(item["sample_id"]).stem)  # files are named by item index
        assert item["target"].dtype == torch.int64 and item["target"].item() == train_labels[index]
    # same files and content hashes as the translation data: the same split
    assert [r.sha256 for r in classes.records()] == [r.sha256 for r in pairs.records()]
    test = FashionClassesDataset(root, "test")
    assert [test[i]["target"].item() for i in range(4)] == [
        int(Path(test[i]["sample_id"]).stem) % 10 for i in range(4)
    ]
    # a subset keeps each file's class
    sub = classes.subset([classes[5]["sample_id"], classes[2]["sample_id"]])
    assert [sub[0]["target"].item(), sub[1]["target"].item()] == [
        classes[5]["target"].item(),
        classes[2]["target"].item(),
    ]
    with pytest.raises(ValueError, match="must be BtoB"):
        FashionClassesDataset(root, "train", direction="AtoB")
    with pytest.raises(ValueError, match="phase must be one of"):
        FashionClassesDataset(root, "val")
    (root / "train" / "garment.png").write_bytes((root / "train").iterdir().__next__().read_bytes())
    with pytest.raises(ValueError, match="not named by a Fashion-MNIST item index"):
        FashionClassesDataset(root, "train")
