"""Face-area readers on tiny datasets written in the published layouts (CelebAMask-HQ, the
mask folder), their hostile variants, and the embedded face-area composites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from miabench.data.embedded.face_area import build_face_area_on_scenes, face_area_mask
from miabench.data.embedded.face_composites import build_faces_on_scenes
from miabench.data.face_area import CelebAMaskHQDataset, MaskFolderDataset, parse_classes
from miabench.data.wider_face import WiderFaceDataset

#: CelebA file of image k, and its partition: k = 0, 1 train, 2 val, 3 test
CELEBA = {0: ("000005.jpg", 0), 1: ("000009.jpg", 0), 2: ("162775.jpg", 1), 3: ("182640.jpg", 2)}
FACE = {"face": ["skin", "nose", "l_eye"]}
MASK = 8  # part-mask side (512 as published); images are twice that, as 1024 is


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _part(rows: slice, cols: slice, size: int = MASK) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[rows, cols] = 255
    return mask


def write_celebamask(
    root: Path, k_offset: int = 0, celeba: dict[int, tuple[str, int]] = CELEBA
) -> Path:
    """Images ``celeba`` (k -> CelebA file, partition) with parts skin (top half), nose (a
    square over the skin), hair (bottom rows) and, for image 1 only, l_eye; ``k_offset``
    moves the indices (folder k // 2000)."""
    rng = np.random.default_rng(0)
    lines = ["idx orig_idx orig_file"]
    for k, (orig, _) in celeba.items():
        k += k_offset
        lines.append(f"{k} {int(orig[:6]) - 1} {orig}")
        image = rng.integers(0, 256, (2 * MASK, 2 * MASK, 3), np.uint8)
        _save(root / "CelebA-HQ-img" / f"{k}.jpg", image)
        folder = root / "CelebAMask-HQ-mask-anno" / str(k // 2000)
        _save(folder / f"{k:05d}_skin.png", _part(slice(0, 4), slice(0, 8)))
        _save(folder / f"{k:05d}_nose.png", _part(slice(2, 4), slice(2, 4)))
        _save(folder / f"{k:05d}_hair.png", _part(slice(6, 8), slice(0, 8)))
        if k - k_offset == 1:
            _save(folder / f"{k:05d}_l_eye.png", _part(slice(0, 1), slice(0, 1)))
    (root / "CelebA-HQ-to-CelebA-mapping.txt").write_text("\n".join(lines) + "\n")
    partition = [f"{orig} {code}" for orig, code in celeba.values()] + ["000001.jpg 0"]
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


def test_celebamask_parts_are_merged_into_the_class_set(tmp_path: Path) -> None:
    root = write_celebamask(tmp_path / "cm")
    train = CelebAMaskHQDataset(root, "train", FACE, mask_size=MASK)
    assert [s.sample_id for s in train._samples] == ["train/0", "train/1"]
    item = train[0]
    # the 16x16 image is brought to the 8x8 annotation size
    assert item["input"].shape == (3, MASK, MASK) and item["target"].dtype == torch.int64
    expected = np.zeros((MASK, MASK), np.int64)
    expected[0:4, :] = 1  # skin and nose are face; hair is no class: background
    np.testing.assert_array_equal(item["target"].numpy(), expected)
    # two classes, the later drawn over the earlier; hair now a class of its own
    two = CelebAMaskHQDataset(
        root, "train", {"face": ["skin"], "nose": ["nose"], "hair": ["hair"]}, mask_size=MASK
    )
    labels = two[1]["target"].numpy()
    assert two.num_classes == 4
    assert labels[0, 0] == 1 and labels[3, 3] == 2 and labels[7, 0] == 3 and labels[5, 0] == 0
    # the class set keys the content hashes: other classes, other digests
    assert train.records()[0].sha256 != two.records()[0].sha256
    # the partition is CelebA's, looked up by each image's original file
    assert [
        s.sample_id for s in CelebAMaskHQDataset(root, "val", FACE, mask_size=MASK)._samples
    ] == ["val/2"]
    assert [
        s.sample_id for s in CelebAMaskHQDataset(root, "test", FACE, mask_size=MASK)._samples
    ] == ["test/3"]


def test_celebamask_folder_is_k_div_2000(tmp_path: Path) -> None:
    root = write_celebamask(tmp_path / "cm", k_offset=4000)
    ds = CelebAMaskHQDataset(root, "train", FACE, mask_size=MASK)
    assert [s.label.name for s in ds._samples] == ["2", "2"]
    assert ds[1]["target"][0, 0] == 1


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"face": ["skin", "beard"]}, "unknown part 'beard'"),
        ({"face": "skin"}, "non-empty list of parts"),
        ({"face": ["skin"], "more": ["skin"]}, "in both 'face' and 'more'"),
        ({"background": ["cloth"]}, "class 0 implicitly"),
        ({}, "mapping of class name"),
    ],
)
def test_bad_class_sets_name_the_key(classes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_classes(classes)
    assert "data.classes" in str(err.value)


def _hostile(root: Path, case: str) -> str:
    """Break a written CelebAMask-HQ root one way; return what the error must name."""
    anno = root / "CelebAMask-HQ-mask-anno" / "0"
    if case == "wrong_size":
        _save(anno / "00000_nose.png", _part(slice(0, 2), slice(0, 2), size=MASK * 2))
        return "00000_nose.png: part mask is 16x16, expected 8x8"
    if case == "resized_mask":
        grey = np.arange(MASK * MASK, dtype=np.uint8).reshape(MASK, MASK)
        _save(anno / "00000_skin.png", grey)
        return "00000_skin.png: part mask has values"
    if case == "malformed_name":
        _save(anno / "0000_skin.png", _part(slice(0, 1), slice(0, 1)))
        return "0000_skin.png: part mask name is not"
    if case == "unknown_part":
        _save(anno / "00001_beard.png", _part(slice(0, 1), slice(0, 1)))
        return "00001_beard.png: unknown part 'beard'"
    if case == "wrong_folder":
        _save(
            root / "CelebAMask-HQ-mask-anno" / "1" / "00001_skin.png",
            _part(slice(0, 1), slice(0, 1)),
        )
        return "belongs in folder 0, not 1"
    if case == "missing_masks":
        for path in anno.glob("00001_*.png"):
            path.unlink()
        return "1.jpg: no part mask"
    if case == "missing_image":
        (root / "CelebA-HQ-img" / "0.jpg").unlink()
        return "0.jpg: listed in CelebA-HQ-to-CelebA-mapping.txt but missing"
    if case == "bad_mapping_row":
        path = root / "CelebA-HQ-to-CelebA-mapping.txt"
        path.write_text(path.read_text() + "seven 12\n")
        return "CelebA-HQ-to-CelebA-mapping.txt:6: expected 'idx orig_idx orig_file'"
    if case == "no_partition":
        (root / "list_eval_partition.txt").unlink()
        return "list_eval_partition.txt does not exist"
    if case == "not_in_partition":
        (root / "list_eval_partition.txt").write_text("000005.jpg 0\n")
        return "not in the partition list: 000009.jpg"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    [
        "wrong_size",
        "resized_mask",
        "malformed_name",
        "unknown_part",
        "wrong_folder",
        "missing_masks",
        "missing_image",
        "bad_mapping_row",
        "no_partition",
        "not_in_partition",
    ],
)
def test_hostile_celebamask_names_the_file(tmp_path: Path, case: str) -> None:
    root = write_celebamask(tmp_path / "cm")
    expected = _hostile(root, case)
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        CelebAMaskHQDataset(root, "train", FACE, mask_size=MASK)[0]
    assert expected in str(err.value)


def write_mask_folder(root: Path, n: int = 3, phase: str = "train", hair: bool = True) -> Path:
    """``n`` 12x10 images with masks: a face square (1), one hair pixel (2, if ``hair``)
    and one unlabelled pixel (255)."""
    rng = np.random.default_rng(1)
    for i in range(n):
        image = rng.integers(0, 256, (12, 10, 3), np.uint8)
        _save(root / "images" / phase / f"img{i}.jpg", image)
        mask = np.zeros((12, 10), np.uint8)
        mask[2:6, 3:7] = 1
        mask[0, 0] = 2 if hair else 0
        mask[11, 9] = 255
        _save(root / "masks" / phase / f"img{i}.png", mask)
    return root


def test_mask_folder_serves_class_ids(tmp_path: Path) -> None:
    root = write_mask_folder(tmp_path / "mf")
    ds = MaskFolderDataset(root, "train", ["background", "face", "hair"])
    assert len(ds) == 3 and ds.num_classes == 3
    item = ds[0]
    assert item["sample_id"] == "train/img0" and item["input"].shape == (3, 12, 10)
    target = item["target"].numpy()
    assert target[3, 4] == 1 and target[0, 0] == 2 and target[11, 9] == 255 and target[8, 1] == 0


def test_hostile_mask_folder_names_the_file(tmp_path: Path) -> None:
    root = write_mask_folder(tmp_path / "mf")
    # class id 2 with only two classes configured
    with pytest.raises(ValueError, match=r"img0.png: mask values \[2\] are not class ids 0..1"):
        MaskFolderDataset(root, "train", ["background", "face"])[0]
    # a colour mask
    _save(root / "masks/train/img1.png", np.zeros((12, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="img1.png: mask mode RGB"):
        MaskFolderDataset(root, "train", ["background", "face", "hair"])[1]
    # a mask of the wrong size
    _save(root / "masks/train/img2.png", np.zeros((6, 5), np.uint8))
    with pytest.raises(ValueError, match=r"img2.png: label map \(6, 5\) does not match"):
        MaskFolderDataset(root, "train", ["background", "face", "hair"])[2]
    # a lossy mask, and an image without one
    (root / "masks/train/img2.png").unlink()
    _save(root / "masks/train/img2.jpg", np.zeros((12, 10), np.uint8))
    with pytest.raises(ValueError, match="img2.jpg: masks must be lossless PNG"):
        MaskFolderDataset(root, "train", ["background", "face"])
    (root / "masks/train/img2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="img2.jpg"):
        MaskFolderDataset(root, "train", ["background", "face"])
    with pytest.raises(ValueError, match="data.classes"):
        MaskFolderDataset(root, "train", ["face"])


def test_face_area_mask_is_the_visible_ellipse() -> None:
    mask = face_area_mask(np.array([[0, 0, 10, 10], [6, 0, 10, 10]]), 16)
    assert mask[5, 6] == 0  # inside the first face's ellipse, but under the second box
    assert mask[5, 11] == 1 and mask[5, 1] == 1  # the second's centre, the first's left
    assert mask[0, 0] == 0 and mask[9, 15] == 0  # box corners are not face area
    assert mask[12:].sum() == 0


def test_embedded_face_area_is_faces_on_scenes_with_masks(tmp_path: Path) -> None:
    args = {"n_train": 3, "n_val": 2, "image_size": 32, "face_size": (10, 16), "seed": 3}
    root = build_face_area_on_scenes(tmp_path / "fa", **args)
    ds = MaskFolderDataset(root, "train", ["background", "face"])
    assert len(ds) == 3 and len(MaskFolderDataset(root, "val", ["background", "face"])) == 2
    wider = WiderFaceDataset(
        build_faces_on_scenes(tmp_path / "fos", **args), "train", image_size=32
    )
    for i in range(3):
        target = ds[i]["target"]
        assert set(target.unique().tolist()) <= {0, 1} and target.sum() > 0
        # the same composite as the detection data (JPEG there, lossless here)
        ours = ds[i]["input"]
        theirs = wider[i]["input"]
        assert ours.shape == theirs.shape and (ours - theirs).abs().mean() < 0.03
        # every face-area pixel lies inside one of the detection boxes
        inside = torch.zeros_like(target, dtype=torch.bool)
        for x1, y1, x2, y2 in wider[i]["boxes"].round().long().tolist():
            inside[y1:y2, x1:x2] = True
        assert not (target.bool() & ~inside).any()
    # built once: a second call with the same parameters is a no-op
    assert build_face_area_on_scenes(tmp_path / "fa", **args) == root
