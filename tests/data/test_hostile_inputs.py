"""Hostile inputs for every reader: each malformed file gets a documented conversion or an
error naming the file, and nothing is half-written.

One builder per malformation (``IMAGES``, ``MASKS``, ``LISTINGS``), one parametrised test per
reader. What each reader is tried with is counted in ``TRIED`` (see docs/reliability.md).
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from miabench.data.aligned import AlignedDataset, read_rgb
from miabench.data.ccpd import CCPDDataset
from miabench.data.datamodule import MembershipDataModule
from miabench.data.faces import ImageFolderFaces, RecordFaces
from miabench.data.lfw_pairs import PairsDataset, read_pairs
from miabench.data.recordio import IRHeader, pack_record, write_record_file
from miabench.data.segmentation import (
    ADE20KDataset,
    CityscapesSegDataset,
    CovidSemiSegDataset,
    PolypDataset,
)
from miabench.data.wider_face import WiderFaceDataset, annotation_file, image_folder
from miabench.data.yolo_boxes import YoloBoxesDataset

SIDE = 16
CONVERTS, REFUSED = "converts", "refused"


def _rgb(seed: int = 0, side: int = SIDE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def _encode(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _exif_rotated(rgb: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° CW to display
    return _encode(Image.fromarray(rgb), "JPEG", exif=exif.tobytes(), quality=95)


# --- malformed image files: name → (bytes of an image of this shape, expected outcome) -----
IMAGES: dict[str, tuple[Callable[[np.ndarray], bytes], str]] = {
    "truncated": (lambda a: _encode(Image.fromarray(a), "PNG")[:60], REFUSED),
    "corrupt": (lambda a: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, REFUSED),
    "not an image": (lambda a: b"hello, world\n", REFUSED),
    "16-bit grey PNG": (
        lambda a: _encode(Image.fromarray(a[:, :, 0].astype(np.uint16) * 257), "PNG"),
        CONVERTS,
    ),
    "float image (TIFF F)": (
        lambda a: _encode(Image.fromarray(a[:, :, 0].astype(np.float32)), "TIFF"),
        REFUSED,
    ),
    "palette PNG": (
        lambda a: _encode(Image.fromarray(a).quantize(16), "PNG"),
        CONVERTS,
    ),
    "RGBA PNG": (lambda a: _encode(Image.fromarray(a).convert("RGBA"), "PNG"), CONVERTS),
    "CMYK JPEG": (lambda a: _encode(Image.fromarray(a).convert("CMYK"), "JPEG"), CONVERTS),
    "EXIF-rotated JPEG": (_exif_rotated, CONVERTS),
    "grey where RGB is expected": (
        lambda a: _encode(Image.fromarray(a[:, :, 0]), "PNG"),
        CONVERTS,
    ),
}

# --- malformed masks (segmentation readers): name → (writer of a label array, outcome) ----


def _mask_png(labels: np.ndarray) -> bytes:
    return _encode(Image.fromarray(labels.astype(np.uint8)), "PNG")


MASKS: dict[str, tuple[Callable[[np.ndarray], bytes], str]] = {
    "mask of another size": (lambda m: _mask_png(np.kron(m, np.ones((2, 2)))), REFUSED),
    "truncated mask": (lambda m: _mask_png(m)[:50], REFUSED),
    "palette mask": (
        lambda m: _encode(_palette(m), "PNG"),
        CONVERTS,
    ),
    "16-bit mask": (
        lambda m: _encode(Image.fromarray(m.astype(np.uint16)), "PNG"),
        CONVERTS,
    ),
    "RGB mask": (
        lambda m: _encode(Image.fromarray(np.repeat(m[:, :, None], 3, 2).astype(np.uint8)), "PNG"),
        CONVERTS,
    ),
}


def _palette(labels: np.ndarray) -> Image.Image:
    image = Image.fromarray(labels.astype(np.uint8), mode="L").convert("P")
    image.putpalette(list(np.random.default_rng(1).integers(0, 256, 768)))
    return image


# --- malformed listings: name → builder(folder of the files, a good file) -> offending path
def _non_utf8(folder: Path, good: Path) -> Path:
    bad = Path(os.fsdecode(bytes(folder) + b"/caf\xe9" + good.suffix.encode()))
    bad.write_bytes(good.read_bytes())
    return bad


def _symlink_loop(folder: Path, good: Path) -> Path:
    loop = folder / f"loop{good.suffix}"
    loop.symlink_to(loop.name)
    return loop


def _empty(folder: Path, good: Path) -> Path:
    for path in folder.iterdir():
        path.unlink()
    return folder


LISTINGS: dict[str, Callable[[Path, Path], Path]] = {
    "non-UTF-8 file name": _non_utf8,
    "symlink loop": _symlink_loop,
    "empty folder": _empty,
}

# --- the readers: each builds a tiny valid dataset whose first sample can be replaced ----


def _labels(seed: int, high: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high + 1, (SIDE, SIDE)).astype(np.uint8)


class Reader:
    """A tiny dataset in one reader's layout: ``image(i)``/``mask(i)`` paths of sample i,
    ``load()`` reads everything (items and content hashes) through the reader."""

    mask_high = 0  # largest label value of a valid mask; 0: no masks

    def __init__(self, root: Path) -> None:
        self.root = root
        for i in range(3):
            self.write_image(i, _encode(Image.fromarray(self.image_array(i)), "PNG"))
            if self.mask_high:
                self.write_mask(i, _mask_png(_labels(i, self.mask_high)))
        self.finish()

    def image_array(self, i: int) -> np.ndarray:
        return _rgb(i)

    def write_image(self, i: int, data: bytes) -> None:
        path = self.image(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def write_mask(self, i: int, data: bytes) -> None:
        path = self.mask(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def finish(self) -> None:
        """Index files written after the images (annotations, records)."""

    def image(self, i: int) -> Path:
        raise NotImplementedError

    def mask(self, i: int) -> Path:
        raise NotImplementedError

    def dataset(self) -> Any:
        raise NotImplementedError

    def load(self) -> list[Any]:
        items = []
        for dataset in self.datasets():
            items += [dataset[i] for i in range(len(dataset))]
            dataset.records()
        return items

    def datasets(self) -> list[Any]:
        return [self.dataset()]


class Aligned(Reader):
    def image_array(self, i: int) -> np.ndarray:
        return np.concatenate([_rgb(i), _rgb(i + 10)], axis=1)

    def image(self, i: int) -> Path:
        return self.root / "train" / f"{i:03d}.png"

    def dataset(self) -> Any:
        return AlignedDataset(self.root, "train")


class ADE20K(Reader):
    mask_high = 150

    def image(self, i: int) -> Path:
        return self.root / "images" / "training" / f"ADE_{i}.jpg"

    def mask(self, i: int) -> Path:
        return self.root / "annotations" / "training" / f"ADE_{i}.png"

    def dataset(self) -> Any:
        return ADE20KDataset(self.root, "training")


class Cityscapes(Reader):
    mask_high = 33

    def image(self, i: int) -> Path:
        return self.root / "leftImg8bit" / "train" / "aachen" / f"a_{i}_leftImg8bit.png"

    def mask(self, i: int) -> Path:
        return self.root / "gtFine" / "train" / "aachen" / f"a_{i}_gtFine_labelIds.png"

    def dataset(self) -> Any:
        return CityscapesSegDataset(self.root, "train")


class Polyps(Reader):
    mask_high = 1

    def image(self, i: int) -> Path:
        return self.root / "TrainDataset" / "images" / f"{i}.png"

    def mask(self, i: int) -> Path:
        return self.root / "TrainDataset" / "masks" / f"{i}.png"

    def dataset(self) -> Any:
        return PolypDataset(self.root, "train")


class Covid(Reader):
    mask_high = 1
    folder = Path("TrainingSet/LungInfection-Train/Doctor-label")

    def image(self, i: int) -> Path:
        return self.root / self.folder / "Imgs" / f"{i}.png"

    def mask(self, i: int) -> Path:
        return self.root / self.folder / "GT" / f"{i}.png"

    def dataset(self) -> Any:
        return CovidSemiSegDataset(self.root, "train")


class WiderFace(Reader):
    def image(self, i: int) -> Path:
        return image_folder(self.root, "train") / "0--Parade" / f"{i}.png"

    def finish(self) -> None:
        faces = "".join(f"0--Parade/{i}.png\n1\n2 2 8 8 0 0 0 0 0 0\n" for i in range(3))
        path = annotation_file(self.root, "train")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(faces)

    def dataset(self) -> Any:
        return WiderFaceDataset(self.root, "train", image_size=SIDE)


class CCPD(Reader):
    """Annotations in the file names, listed in ``splits/train.txt``; SIDE x SIDE images
    declared as such."""

    def image(self, i: int) -> Path:
        return (
            self.root / "ccpd_base" / f"{i:03d}-90_90-2&2_8&6-8&6_2&6_2&2_8&2-0_0_1_2_3_4_5-9-9.jpg"
        )

    def finish(self) -> None:
        names = "".join(self.image(i).relative_to(self.root).as_posix() + "\n" for i in range(3))
        (self.root / "splits").mkdir(exist_ok=True)
        (self.root / "splits" / "train.txt").write_text(names)

    def dataset(self) -> Any:
        return CCPDDataset(self.root, "train", image_size=SIDE, declared_size=(SIDE, SIDE))


class YoloBoxes(Reader):
    def image(self, i: int) -> Path:
        return self.root / "images" / "train" / f"{i}.png"

    def finish(self) -> None:
        (self.root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        for i in range(3):
            (self.root / "labels" / "train" / f"{i}.txt").write_text("0 0.5 0.5 0.5 0.25\n")

    def dataset(self) -> Any:
        return YoloBoxesDataset(self.root, "train", image_size=SIDE)


class IdentityFolders(Reader):
    def image(self, i: int) -> Path:
        return self.root / f"id{i % 3}" / f"{i}.png"

    def datasets(self) -> list[Any]:
        # both sides of the identity partition, so every image is read
        return [
            ImageFolderFaces(self.root, phase=side, n_member_identities=2,
                             n_nonmember_identities=1, image_size=SIDE)
            for side in ("members", "nonmembers")
        ]  # fmt: skip


class InsightFaceRec(Reader):
    """``train.rec``: the images are record payloads; ``image(i)`` is where the payloads are
    staged before being packed (``finish``)."""

    def image(self, i: int) -> Path:
        return self.root / "staged" / f"{i}.bin"

    def finish(self) -> None:
        records = [
            (i, pack_record(IRHeader(0, float(i), i, 0), self.image(i).read_bytes()))
            for i in range(3)
        ]
        write_record_file(self.root / "train.rec", self.root / "train.idx", records)

    def datasets(self) -> list[Any]:
        return [
            RecordFaces(self.root, phase=side, n_member_identities=2, n_nonmember_identities=1,
                        image_size=SIDE)
            for side in ("members", "nonmembers")
        ]  # fmt: skip


class LFWPairs(Reader):
    def image(self, i: int) -> Path:
        return self.root / "lfw" / "A" / f"A_{i + 1:04d}.jpg"

    def finish(self) -> None:
        (self.root / "pairs.txt").write_text("1 2\nA 1 2\nA 2 3\n")

    def load(self) -> list[Any]:
        pairs = PairsDataset(read_pairs(self.root / "pairs.txt", self.root / "lfw"), SIDE)
        return [pairs[i] for i in range(len(pairs))]


READERS: dict[str, type[Reader]] = {
    "aligned pairs": Aligned,
    "ADE20K": ADE20K,
    "Cityscapes": Cityscapes,
    "Kvasir/PraNet": Polyps,
    "COVID-SemiSeg": Covid,
    "WIDER FACE": WiderFace,
    "CCPD": CCPD,
    "YOLO boxes": YoloBoxes,
    "identity folders": IdentityFolders,
    "InsightFace .rec": InsightFaceRec,
    "LFW pairs": LFWPairs,
}
#: readers whose samples come from a folder listing (the others name files in an index)
LISTED = (
    "aligned pairs",
    "ADE20K",
    "Kvasir/PraNet",
    "COVID-SemiSeg",
    "identity folders",
    "YOLO boxes",
)

CASES = (
    [(r, "image", m) for r in READERS for m in IMAGES]
    + [(r, "mask", m) for r, cls in READERS.items() if cls.mask_high for m in MASKS]
    + [(r, "listing", m) for r in LISTED for m in LISTINGS]
)
TRIED = {r: sum(1 for c in CASES if c[0] == r) for r in READERS}


def _tensors(items: list[Any]) -> list[torch.Tensor]:
    found = []
    for item in items:
        for key in ("input", "target", "first", "second"):  # images, not boxes or labels
            value = item.get(key)
            if torch.is_tensor(value) and value.is_floating_point():
                found.append(value)
    return found


@pytest.mark.parametrize(("reader", "kind", "case"), CASES, ids=["/".join(c) for c in CASES])
def test_malformed_input_converts_as_documented_or_is_refused_naming_the_file(
    tmp_path: Path, reader: str, kind: str, case: str
) -> None:
    data = READERS[reader](tmp_path / "data")
    before = sorted(p for p in tmp_path.rglob("*"))
    if kind == "image":
        make, outcome = IMAGES[case]
        data.write_image(0, make(data.image_array(0)))
        data.finish()
        bad = data.image(0)
    elif kind == "mask":
        make, outcome = MASKS[case]
        data.write_mask(0, make(_labels(0, data.mask_high)))
        bad = data.mask(0)
    else:
        outcome = REFUSED
        bad = LISTINGS[case](data.image(0).parent, data.image(0))
        before = sorted(p for p in tmp_path.rglob("*"))

    if outcome == REFUSED:
        with pytest.raises((ValueError, FileNotFoundError)) as err:
            data.load()
        message = str(err.value)
        where = bad.name
        if reader == "InsightFace .rec" and kind == "image":
            where = "train.rec"  # a record has no file of its own: the file and key are named
        assert where in message or repr(os.fsencode(where))[2:-1] in message, message
    else:
        items = data.load()
        for tensor in _tensors(items):
            assert torch.isfinite(tensor).all() and tensor.min() >= 0 and tensor.max() <= 1
    # reading never writes into the dataset
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_conversions_give_the_documented_pixels(tmp_path: Path) -> None:
    rgb = _rgb(0)
    cases = {name: make(rgb) for name, (make, _) in IMAGES.items()}
    for name, data in cases.items():
        (tmp_path / f"{name}.img").write_bytes(data)

    def read(name: str, mode: str = "rgb") -> np.ndarray:
        return read_rgb(tmp_path / f"{name}.img", mode)

    # 16-bit grey: scaled to 8 bits (PIL's convert would clip it all to 255), on 3 channels
    assert np.array_equal(read("16-bit grey PNG"), np.repeat(rgb[:, :, :1], 3, axis=2))
    # RGBA: alpha dropped; palette: its colours
    assert np.array_equal(read("RGBA PNG"), rgb)
    palette = Image.open(io.BytesIO(cases["palette PNG"]))
    assert np.array_equal(read("palette PNG"), np.asarray(palette.convert("RGB")))
    # the authors' Grayscale(3) for palette and RGBA: ITU-R 601-2 luma on 3 channels
    for name in ("palette PNG", "RGBA PNG"):
        grey = read(name, "grayscale")
        assert np.array_equal(grey[:, :, 0], grey[:, :, 2])
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.array_equal(read("RGBA PNG", "grayscale")[:, :, 1], luma)
    # RGB files are not affected by palette_rgba
    (tmp_path / "plain.png").write_bytes(_encode(Image.fromarray(rgb), "PNG"))
    assert np.array_equal(read_rgb(tmp_path / "plain.png", "grayscale"), rgb)
    # EXIF orientation is not applied: stored pixel order, like the same JPEG without EXIF
    plain = _encode(Image.fromarray(rgb), "JPEG", quality=95)
    assert np.array_equal(
        read("EXIF-rotated JPEG"), np.asarray(Image.open(io.BytesIO(plain)).convert("RGB"))
    )
    # CMYK: PIL's conversion (close to the source colours, JPEG-lossy)
    assert np.abs(read("CMYK JPEG").astype(int) - rgb).mean() < 40
    with pytest.raises(ValueError, match="palette_rgba"):
        AlignedDataset(tmp_path, "x", palette_rgba="grey")


def test_failed_split_draw_writes_no_manifest(tmp_path: Path) -> None:
    data = Aligned(tmp_path / "data")
    data.write_image(2, IMAGES["truncated"][0](data.image_array(2)))
    manifest = tmp_path / "splits" / "split.csv"
    dm = MembershipDataModule(
        dataset=lambda phase, augment: AlignedDataset(data.root, phase, augment=augment),
        n_members=1,
        n_nonmembers=1,
        manifest_path=manifest,
    )
    with pytest.raises(ValueError, match="002.png"):
        dm.setup()
    assert not manifest.parent.exists() or list(manifest.parent.iterdir()) == []


def test_truncated_record_file_is_named(tmp_path: Path) -> None:
    data = InsightFaceRec(tmp_path / "data")
    rec = data.root / "train.rec"
    rec.write_bytes(rec.read_bytes()[:-40])
    with pytest.raises(ValueError, match="train.rec"):
        data.load()
    assert struct.calcsize("<I") == 4
