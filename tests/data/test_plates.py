"""License-plate readers on files built in their published layouts: CCPD (annotations in
the file name, split lists) and the YOLO text layout, their hostile inputs, and the embedded
plates-on-scenes data read back through the YOLO reader."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from miabench.data.ccpd import CCPDDataset, parse_ccpd_name
from miabench.data.embedded.build import COMPLETE_MARKER
from miabench.data.embedded.plate_composites import build_plates_on_scenes
from miabench.data.wider_face import collate
from miabench.data.yolo_boxes import YoloBoxesDataset, parse_label_file

#: the authors' README example, and the fields it says it holds
README_NAME = (
    "025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg"
)


def ccpd_name(box: tuple[int, int, int, int], plate: str = "0_0_22_27_27_33_16", i: int = 0) -> str:
    """A CCPD file name with the given box (vertices at its corners, from right-bottom)."""
    x1, y1, x2, y2 = box
    vertices = f"{x2}&{y2}_{x1}&{y2}_{x1}&{y1}_{x2}&{y1}"
    return f"{i:03d}-90_90-{x1}&{y1}_{x2}&{y2}-{vertices}-{plate}-{100 + i}-{i}.jpg"


def write_ccpd(root: Path, size: tuple[int, int] = (40, 60)) -> dict[str, list[str]]:
    """CCPD2019's layout with ``size`` (W, H) images: 4 CCPD-Base images split 3 train / 1
    val, and 2 ccpd_tilt images listed in ``splits/ccpd_tilt.txt``."""
    rng = np.random.default_rng(0)
    lists: dict[str, list[str]] = {"train": [], "val": [], "ccpd_tilt": []}
    for i in range(6):
        folder, phase = ("ccpd_base", "train" if i < 3 else "val") if i < 4 else ("ccpd_tilt",) * 2
        name = f"{folder}/{ccpd_name((2 + i, 10, 30, 20 + i), i=i)}"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        lists[phase].append(name)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for phase, names in lists.items():
        (root / "splits" / f"{phase}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return lists


def write_yolo(root: Path, phases: tuple[str, ...] = ("train", "val"), flat: bool = False) -> None:
    """The YOLO layout: per phase, 3 images 40x20 with 0, 1 and 2 boxes (one of class 1)."""
    rng = np.random.default_rng(0)
    labels = ["", "0 0.5 0.5 0.5 0.4\n", "0 0.25 0.5 0.5 1.0\n1 0.75 0.25 0.2 0.2\n"]
    for phase in phases:
        parts = () if flat else (phase,)
        for i, text in enumerate(labels):
            image = root.joinpath("images", *parts, f"{phase}_{i}.png")
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8)).save(image)
            label = root.joinpath("labels", *parts, f"{phase}_{i}.txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------- CCPD


def test_ccpd_name_fields_parse_exactly() -> None:
    a = parse_ccpd_name(f"ccpd_base/{README_NAME}")
    assert a.name == f"ccpd_base/{README_NAME}"
    assert a.area == 25 and a.tilt == (95, 113)
    assert a.box == (154, 383, 386, 473)
    # from the right-bottom vertex: right-bottom, left-bottom, left-up, right-up
    assert a.vertices == ((386, 473), (177, 454), (154, 383), (363, 402))
    np.testing.assert_array_equal(a.corners, [[154, 383], [363, 402], [386, 473], [177, 454]])
    assert a.plate_indices == (0, 0, 22, 27, 27, 33, 16)
    assert a.plate == "皖AY339S"  # provinces[0], alphabets[0], ads[22, 27, 27, 33, 16]
    assert (a.brightness, a.blur) == (37, 15)
    # CCPD-Green: eight characters
    green = parse_ccpd_name(ccpd_name((1, 2, 3, 4), plate="0_0_3_24_30_30_30_30"))
    assert green.plate == "皖AD06666" and green.box == (1, 2, 3, 4)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("025-95_113-154&383_386&473-0_0_22_27_27_33_16-37-15.jpg", "expected 7"),
        ("plate.jpg", "expected 7"),
        (README_NAME.replace("95_113", "95"), "tilt must be 2"),
        (README_NAME.replace("154&383_386&473-", "154&383-"), "bounding box must be 2"),
        (README_NAME.replace("154&383_386&473-", "154&383_386&x-"), "bounding box must be 2"),
        (README_NAME.replace("154&383_386&473-", "386&383_154&473-"), "is empty"),
        (README_NAME.replace("_363&402-", "-"), "vertices must be 4"),
        (README_NAME.replace("0_0_22_27_27_33_16", "0_0_22_27_27_33"), "7 or 8"),
        (README_NAME.replace("0_0_22_27_27_33_16", "34_0_22_27_27_33_16"), "authors' tables"),
        (README_NAME.replace("0_0_22_27_27_33_16", "0_0_22_27_27_33_35"), "authors' tables"),
        (README_NAME.replace("-37-15", "-x-15"), "brightness"),
        (README_NAME.replace("-37-15", "-\u00b2-15"), "brightness"),  # a Unicode digit
    ],
)
def test_malformed_ccpd_names_say_what_is_wrong(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ccpd_name(name)


def test_ccpd_dataset_reads_split_lists_and_letterboxes(tmp_path: Path) -> None:
    lists = write_ccpd(tmp_path)
    train = CCPDDataset(tmp_path, "train", image_size=30, declared_size=(40, 60))
    assert len(train) == 3 and train.counts == {"images": 3, "empty": 0, "boxes": 3, "skipped": 0}
    item = train[0]  # 40x60 → scale 0.5 → 20x30, padded right to 30x30
    assert item["sample_id"] == f"train/{lists['train'][0]}"
    assert item["input"].shape == (3, 30, 30) and item["input"][:, :, 20:].abs().max() == 0
    torch.testing.assert_close(item["boxes"], torch.tensor([[1.0, 5, 15, 10]]))
    assert item["ignore"].tolist() == [False]
    tilt = CCPDDataset(tmp_path, "ccpd_tilt", image_size=30, declared_size=(40, 60))
    assert [r.sample_id for r in tilt.records()] == [f"ccpd_tilt/{n}" for n in lists["ccpd_tilt"]]
    batch = collate([train[i] for i in range(3)])
    assert batch["input"].shape == (3, 3, 30, 30) and [len(b) for b in batch["boxes"]] == [1] * 3
    # CCPD2020's layout: folders per phase, no split lists
    folder = CCPDDataset(tmp_path, "ccpd_base", image_size=30, split_dir=None, declared_size=None)
    assert len(folder) == 4


def test_ccpd_hostile_lists_and_images_are_named(tmp_path: Path) -> None:
    lists = write_ccpd(tmp_path)
    # the real declared size: these 40x60 boxes fit, but the decoded 40x60 image is refused
    dataset = CCPDDataset(tmp_path, "train", image_size=30)
    with pytest.raises(ValueError, match=r"image is 40x60, CCPD images are 720x1160"):
        dataset[0]
    # a box outside the declared image: the list file, line and name are named
    outside = "ccpd_base/" + ccpd_name((2, 10, 41, 20), i=9)
    split = tmp_path / "splits" / "train.txt"
    split.write_text("\n".join([*lists["train"], outside]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        CCPDDataset(tmp_path, "train", image_size=30, declared_size=(40, 60))
    assert f"{split}:4: {outside}: bounding box (2, 10, 41, 20) outside" in str(err.value)
    # no declared size: the box is checked against the decoded image when it is read
    Image.new("RGB", (40, 60)).save(tmp_path / outside)
    loose = CCPDDataset(tmp_path, "train", image_size=30, declared_size=None)
    with pytest.raises(ValueError, match=r"outside the 40x60 image"):
        loose[3]
    for text, message in [
        (f"{lists['train'][0]}\n{lists['train'][0]}\n", ":2: .* is listed twice"),
        ("../elsewhere/x.jpg\n", ":1: '../elsewhere/x.jpg' is not a path inside"),
        ("/abs/x.jpg\n", "is not a path inside"),
        ("\n", "lists no image"),
    ]:
        split.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            CCPDDataset(tmp_path, "train", image_size=30, declared_size=(40, 60))
    split.write_text("ccpd_base/" + ccpd_name((1, 1, 5, 5), i=7) + "\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="1 listed image"):
        CCPDDataset(tmp_path, "train", image_size=30, declared_size=(40, 60))
    with pytest.raises(FileNotFoundError, match=r"splits/test.txt not found"):
        CCPDDataset(tmp_path, "test", image_size=30)


def test_ccpd_skip_policy_counts_what_it_leaves_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lists = write_ccpd(tmp_path)
    split = tmp_path / "splits" / "train.txt"
    bad = ["ccpd_base/not-a-ccpd-name.jpg", "ccpd_base/" + ccpd_name((2, 10, 50, 20), i=8)]
    split.write_text("\n".join([*lists["train"], *bad]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.txt:4: ccpd_base/not-a-ccpd-name.jpg: expected 7"):
        CCPDDataset(tmp_path, "train", image_size=30, declared_size=(40, 60))
    with pytest.raises(ValueError, match="data.invalid must be one of"):
        CCPDDataset(tmp_path, "train", image_size=30, invalid="ignore")
    with caplog.at_level(logging.WARNING, logger="miabench.data.boxes"):
        dataset = CCPDDataset(
            tmp_path, "train", image_size=30, declared_size=(40, 60), invalid="skip"
        )
    assert len(dataset) == 3 and dataset.counts["skipped"] == 2
    assert [where.rsplit(": ", 1)[-1] for where, _ in dataset.skipped] == bad
    assert "skipped 2 image(s) with invalid annotations" in caplog.text
    assert "skipped=2" in repr(dataset)


# ---------------------------------------------------------------------------- YOLO


def test_yolo_dataset_reads_boxes_in_pixels_and_counts_empty_files(tmp_path: Path) -> None:
    write_yolo(tmp_path)
    train = YoloBoxesDataset(tmp_path, "train", image_size=20)
    assert [r.sample_id for r in train.records()] == [f"train/train_{i}.png" for i in range(3)]
    assert train.counts == {
        "other_class_boxes": 0, "images": 3, "empty": 1, "boxes": 3, "skipped": 0,
    }  # fmt: skip
    assert train[0]["boxes"].shape == (0, 4)  # an empty label file: a background image
    # 40x20 → scale 0.5 → 20x10, padded below; cx .5 cy .5 w .5 h .4 → x 10..30, y 6..14 px
    torch.testing.assert_close(train[1]["boxes"], torch.tensor([[5.0, 3, 15, 7]]))
    torch.testing.assert_close(
        train[2]["boxes"], torch.tensor([[0.0, 0, 10, 10], [13, 1.5, 17, 3.5]])
    )
    plates = YoloBoxesDataset(tmp_path, "train", image_size=20, classes=[0])
    assert [len(plates[i]["boxes"]) for i in range(3)] == [0, 1, 1]
    assert plates.counts["other_class_boxes"] == 1
    val = YoloBoxesDataset(tmp_path, "val", image_size=20)
    assert val[0]["sample_id"] == "val/val_0.png"


def test_yolo_flat_layout(tmp_path: Path) -> None:
    write_yolo(tmp_path, phases=("all",), flat=True)
    dataset = YoloBoxesDataset(tmp_path, "train", image_size=20, flat=True)
    assert [dataset[i]["sample_id"] for i in range(3)] == [f"all_{i}.png" for i in range(3)]
    with pytest.raises(FileNotFoundError, match=r"images/train does not exist"):
        YoloBoxesDataset(tmp_path, "train", image_size=20)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.5 0.5 0.2\n", ":1: expected 5 fields 'class cx cy w h', got 4"),
        ("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 0.9\n", ":2: expected 5 fields"),
        ("0 0.5 0.5 0.2 x\n", ":1: expected numbers"),
        ("0 nan 0.5 0.2 0.2\n", ":1: expected finite numbers"),
        ("-1 0.5 0.5 0.2 0.2\n", ":1: class must be an integer >= 0"),
        ("0.5 0.5 0.5 0.2 0.2\n", ":1: class must be an integer >= 0"),
        ("0 1.5 0.5 0.2 0.2\n", ":1: box outside the image: cx cy w h must be fractions"),
        ("0 0.95 0.5 0.2 0.2\n", ":1: box outside the image: edges x 0.8500..1.0500"),
        ("0 0.5 0.5 0 0.2\n", ":1: box of zero size"),
    ],
)
def test_malformed_yolo_label_lines_name_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "a.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        parse_label_file(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_yolo_edges_within_tolerance_are_clipped(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("0 0.9 0.5 0.21 0.2\n\n", encoding="utf-8")  # right edge at 1.005
    classes, boxes = parse_label_file(path)
    assert classes.tolist() == [0]
    np.testing.assert_allclose(boxes, [[(0.795 + 1.0) / 2, 0.5, 0.205, 0.2]])


def test_yolo_dataset_names_or_skips_bad_label_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_yolo(tmp_path)
    labels = tmp_path / "labels" / "train"
    (labels / "train_1.txt").write_text("0 0.5 0.5 0.2\n", encoding="utf-8")
    (labels / "train_2.txt").unlink()
    with pytest.raises(ValueError, match=r"train_1.txt:1: expected 5 fields"):
        YoloBoxesDataset(tmp_path, "train", image_size=20)
    with caplog.at_level(logging.WARNING, logger="miabench.data.boxes"):
        kept = YoloBoxesDataset(tmp_path, "train", image_size=20, invalid="skip")
    assert len(kept) == 1 and kept.counts["skipped"] == 2
    assert [Path(w.split(":")[0]).name for w, _ in kept.skipped] == ["train_1.txt", "train_2.txt"]
    assert "label file not found" in kept.skipped[1][1]
    assert "skipped 2 image(s)" in caplog.text
    (labels / "train_1.txt").unlink()
    with pytest.raises(ValueError, match=r"train_1.txt: label file not found"):
        YoloBoxesDataset(tmp_path, "train", image_size=20)
    for path in (tmp_path / "images" / "train").iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"no images .* in YOLO images folder"):
        YoloBoxesDataset(tmp_path, "train", image_size=20)


# ---------------------------------------------------------------------------- embedded


def test_plates_on_scenes_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "plates"
    kwargs = {"n_train": 4, "n_val": 2, "image_size": 64, "plate_width": (16, 28), "seed": 3}
    assert build_plates_on_scenes(root, **kwargs) == root
    assert (root / COMPLETE_MARKER).is_file() and (root / "data.yaml").is_file()
    marker = (root / COMPLETE_MARKER).stat().st_mtime_ns
    build_plates_on_scenes(root, **kwargs)  # same parameters: a no-op
    assert (root / COMPLETE_MARKER).stat().st_mtime_ns == marker
    with pytest.raises(ValueError, match="was built with"):
        build_plates_on_scenes(root, **{**kwargs, "seed": 4})

    train = YoloBoxesDataset(root, "train", image_size=64)
    assert len(train) == 4 and len(YoloBoxesDataset(root, "val", image_size=64)) == 2
    assert train.counts["boxes"] >= 4 and train.counts["skipped"] == 0
    for i, labels in enumerate(train._items):
        # the box is the bounding box of the warped plate's corners (pixels, rounded out)
        assert labels.corners is not None and labels.corners.shape == (len(labels.boxes), 4, 2)
        corners = labels.corners * 64
        box = train[i]["boxes"].numpy()
        np.testing.assert_allclose(box[:, :2], np.floor(corners.min(1)), atol=1e-3)
        np.testing.assert_allclose(box[:, 2:], np.ceil(corners.max(1)), atol=1e-3)
        # a plate is wider than high
        assert ((box[:, 2] - box[:, 0]) > (box[:, 3] - box[:, 1])).all()
    # a corners sidecar that disagrees with its labels is refused, naming it
    sidecar = sorted((root / "corners" / "train").iterdir())[0]
    sidecar.write_text(sidecar.read_text() + "0 0 1 0 1 1 0 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{sidecar.name}: \d corner line\(s\) for \d label"):
        YoloBoxesDataset(root, "train", image_size=64)
