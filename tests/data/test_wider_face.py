"""WIDER FACE annotation parser and loader on files the tests write, and the embedded
faces-on-scenes data read back through the same loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from miabench.data.embedded.build import COMPLETE_MARKER
from miabench.data.embedded.face_composites import build_faces_on_scenes
from miabench.data.wider_face import (
    WiderFaceDataset,
    annotation_file,
    collate,
    image_folder,
    letterbox,
    parse_annotations,
)

# Four records as in the published file: two faces, no face (count 0 + placeholder zeros),
# one invalid face beside a valid one, and a zero-width box beside a valid one.
ANNOTATIONS = """\
0--Parade/0_Parade_a.jpg
2
10 20 30 40 0 0 0 0 0 0
50 10 20 20 1 0 0 0 1 0
1--Handshaking/1_Handshaking_b.jpg
0
0 0 0 0 0 0 0 0 0 0
2--Demonstration/2_Demonstration_c.jpg
2
5 5 10 10 2 0 0 1 0 0
30 30 16 16 0 0 0 0 0 0
3--Riot/3_Riot_d.jpg
2
40 40 0 12 0 0 0 0 0 0
8 8 12 12 0 0 0 0 0 0
"""
# WIDER writes face lines with a trailing space.
ANNOTATIONS = "".join(
    line + (" \n" if len(line.split()) == 10 else "\n") for line in ANNOTATIONS.splitlines()
)
SIZES = {  # (width, height) of each image
    "0--Parade/0_Parade_a.jpg": (100, 80),
    "1--Handshaking/1_Handshaking_b.jpg": (60, 60),
    "2--Demonstration/2_Demonstration_c.jpg": (64, 64),
    "3--Riot/3_Riot_d.jpg": (64, 48),
}


def write_wider(root: Path, text: str = ANNOTATIONS, phase: str = "train") -> Path:
    """The WIDER FACE layout with images of random pixels and the given annotation text."""
    rng = np.random.default_rng(0)
    for name, (width, height) in SIZES.items():
        path = image_folder(root, phase) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    path = annotation_file(root, phase)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_parser_handles_zero_face_invalid_and_zero_size(tmp_path: Path) -> None:
    records = {r.name: r for r in parse_annotations(write_wider(tmp_path))}
    assert list(records) == list(SIZES)
    parade = records["0--Parade/0_Parade_a.jpg"]
    np.testing.assert_array_equal(parade.boxes, [[10, 20, 40, 60], [50, 10, 70, 30]])
    assert not parade.ignore.any()
    # count 0: no face, and the placeholder line of zeros is not a box
    empty = records["1--Handshaking/1_Handshaking_b.jpg"]
    assert empty.boxes.shape == (0, 4) and empty.ignore.shape == (0,)
    # the 8th value is `invalid` (the readme's order): that face is ignored, not dropped
    demo = records["2--Demonstration/2_Demonstration_c.jpg"]
    np.testing.assert_array_equal(demo.boxes, [[5, 5, 15, 15], [30, 30, 46, 46]])
    assert demo.ignore.tolist() == [True, False]
    # a zero-width box is dropped
    riot = records["3--Riot/3_Riot_d.jpg"]
    np.testing.assert_array_equal(riot.boxes, [[8, 8, 20, 20]])
    assert riot.line == 12


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a/b.jpg\n1\n10 20 30 40 0 0 0\n", ":3: expected 10 integers"),
        ("a/b.jpg\n1\n10 20 x 40 0 0 0 0 0 0\n", ":3: expected 10 integers"),
        ("a/b.jpg\ntwo\n", ":2: expected a face count"),
        ("a/b.jpg\n-1\n", ":2: expected a face count"),
        ("a/b.jpg\n3\n1 1 2 2 0 0 0 0 0 0\n", ":1: record of 'a/b.jpg' announces 3"),
        ("a/b.jpg\n0\n1 1 2 2 0 0 0 0 0 0\n", ":3: 'a/b.jpg' has 0 faces"),
        ("a/b.jpg\n0\n", ":1: record of 'a/b.jpg' announces 0"),
        ("1\n1 1 2 2 0 0 0 0 0 0\n", ":1: expected an image path"),
        ("a/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0\na/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n", ":4: image"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gt.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as err:
        parse_annotations(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_dataset_letterboxes_and_keeps_ignore_flags(tmp_path: Path) -> None:
    write_wider(tmp_path)
    dataset = WiderFaceDataset(tmp_path, "train", image_size=50)
    assert len(dataset) == 4
    item = dataset[0]  # 100x80 → scale 0.5 → 50x40, padded below to 50x50
    assert item["sample_id"] == "train/0--Parade/0_Parade_a.jpg"
    assert item["input"].shape == (3, 50, 50)
    assert item["input"][:, 40:].abs().max() == 0  # padding
    torch.testing.assert_close(item["boxes"], torch.tensor([[5.0, 10, 20, 30], [25, 5, 35, 15]]))
    assert dataset[1]["boxes"].shape == (0, 4)
    assert dataset[2]["ignore"].tolist() == [True, False]

    batch = collate([dataset[i] for i in range(4)])
    assert batch["input"].shape == (4, 3, 50, 50)
    assert [len(b) for b in batch["boxes"]] == [2, 0, 2, 1]

    records = dataset.records()
    assert len({r.sha256 for r in records}) == 4
    subset = dataset.subset([records[2].sample_id, records[0].sample_id])
    assert [subset[i]["sample_id"] for i in range(2)] == [
        records[2].sample_id,
        records[0].sample_id,
    ]
    with pytest.raises(ValueError, match="not in"):
        dataset.subset(["train/nope.jpg"])


def test_missing_image_and_phase_are_named(tmp_path: Path) -> None:
    write_wider(tmp_path)
    (image_folder(tmp_path, "train") / "3--Riot/3_Riot_d.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"3_Riot_d.jpg \(line 12\)"):
        WiderFaceDataset(tmp_path, "train", image_size=32)
    with pytest.raises(FileNotFoundError, match="wider_face_val_bbx_gt.txt"):
        WiderFaceDataset(tmp_path, "val", image_size=32)


def test_letterbox_flip_moves_boxes_with_pixels() -> None:
    image = torch.zeros(3, 20, 40)
    image[:, 4:8, 2:10] = 1.0  # a bright box at x 2..10, y 4..8
    boxes = torch.tensor([[2.0, 4, 10, 8]])
    out, moved = letterbox(image, boxes, size=80, flip=True)  # scale 2, mirrored
    x1, y1, x2, y2 = moved[0].round().int().tolist()
    assert (x1, y1, x2, y2) == (60, 8, 76, 16)
    # bilinear upsampling blurs the edge pixels; the inside and the total mass stay
    assert out[0, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].min() > 0.9
    assert out[0].sum() == pytest.approx(16 * 8, rel=0.1)


def test_faces_on_scenes_built_once_in_wider_layout(tmp_path: Path) -> None:
    root = tmp_path / "fos"
    build_faces_on_scenes(root, n_train=6, n_val=3, image_size=64, face_size=(12, 24), seed=1)
    marker = json.loads((root / COMPLETE_MARKER).read_text())
    for phase, n in (("train", 6), ("val", 3)):
        dataset = WiderFaceDataset(root, phase, image_size=64)
        assert len(dataset) == n
        boxes = [dataset[i]["boxes"] for i in range(n)]
        assert sum(len(b) for b in boxes) == marker["counts"][f"{phase}_faces"]
        for b in boxes:
            assert 1 <= len(b) <= 3
            sides = b[:, 2:] - b[:, :2]
            assert ((sides >= 12) & (sides <= 24)).all()
            assert torch.allclose(sides[:, 0], sides[:, 1])  # square face crops
    # a second build with the same parameters is a no-op; other parameters are refused
    stamp = (root / COMPLETE_MARKER).stat().st_mtime_ns
    build_faces_on_scenes(root, n_train=6, n_val=3, image_size=64, face_size=(12, 24), seed=1)
    assert (root / COMPLETE_MARKER).stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="was built with"):
        build_faces_on_scenes(root, n_train=6, n_val=3, image_size=64, face_size=(12, 24), seed=2)
    # no temporary folders are left beside it
    assert [p.name for p in tmp_path.iterdir()] == ["fos"]


def test_faces_are_pasted_where_the_boxes_say(tmp_path: Path) -> None:
    """The box region holds an LFW face (grayscale) while backgrounds are colour photos."""
    root = tmp_path / "fos"
    build_faces_on_scenes(
        root, n_train=4, n_val=1, image_size=64, n_faces=(1, 1), backgrounds=("coffee",), seed=0
    )
    dataset = WiderFaceDataset(root, "train", image_size=64)
    for i in range(4):
        item = dataset[i]
        x1, y1, x2, y2 = item["boxes"][0].int().tolist()
        face = item["input"][:, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2]
        chroma = (face - face.mean(0, keepdim=True)).abs().mean()
        whole = (item["input"] - item["input"].mean(0, keepdim=True)).abs().mean()
        assert chroma < 0.02 < whole
