"""CCPD (Chinese City Parking Dataset, Xu et al., ECCV 2018) in its published layout, for
license-plate localization victims.

Layout (``CCPD2019.tar.xz`` as the authors distribute it, github.com/detectRecog/CCPD)::

    <root>/ccpd_base/<name>.jpg      ccpd_blur/ ccpd_challenge/ ccpd_db/ ccpd_fn/
    <root>/ccpd_rotate/ ccpd_tilt/ ...                               720 x 1160 (W x H) photos
    <root>/splits/train.txt val.txt test.txt ccpd_blur.txt ccpd_tilt.txt ...

A split file lists one image path relative to ``<root>`` per line (``ccpd_base/<name>.jpg``);
the phase names the split file: ``train`` and ``val`` are CCPD-Base, ``test`` and the
``ccpd_*`` lists the other subsets, which the authors use as tests. CCPD2020 (CCPD-Green,
eight-character plates) ships folders instead of lists (``ccpd_green/{train,val,test}``):
with ``split_dir=None`` the phase is a folder under ``<root>`` whose images are read.

Every annotation is in the file name: seven ``-``-separated fields, e.g.
``025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg``:

1. area: the plate's area as a ratio of the picture's (``025``; kept as written);
2. tilt: horizontal and vertical tilt degrees (``95_113``);
3. bounding box: left-up and right-bottom corners (``154&383_386&473``);
4. four vertices: the plate's exact corners, starting from the right-bottom one
   (right-bottom, left-bottom, left-up, right-up as the authors' sample shows);
5. plate number: character indices into the authors' ``provinces``, ``alphabets`` and
   ``ads`` tables (first, second, then the rest; 7 characters, 8 in CCPD-Green);
6. brightness and 7. blurriness of the plate region.

Each image holds exactly one plate. A name that does not parse, indices outside the
tables, or a box outside the declared image (``declared_size``, 720 x 1160) is invalid: an
error naming the split file, line and name, or, with ``invalid=skip``, skipped and counted
(:mod:`miabench.data.boxes`). A decoded image of another size than declared is refused
when it is read, naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from miabench.data.aligned import listed_image, read_text_lines
from miabench.data.boxes import BoxDataset, InvalidAnnotations

# The authors' tables (README, "Dataset Annotations"). "O" is their "no character" mark.
PROVINCES = (
    "皖", "沪", "津", "渝", "冀", "晋", "蒙", "辽", "吉", "黑", "苏", "浙", "京", "闽", "赣",
    "鲁", "豫", "鄂", "湘", "粤", "桂", "琼", "川", "贵", "云", "藏", "陕", "甘", "青", "宁",
    "新", "警", "学", "O",
)  # fmt: skip
ALPHABETS = tuple("ABCDEFGHJKLMNPQRSTUVWXYZO")
ADS = tuple("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789O")
#: fields of a file name
N_FIELDS = 7
#: CCPD2019 plates have 7 characters, CCPD2020 (green, new-energy vehicles) 8
PLATE_LENGTHS = (7, 8)
#: (width, height) of every CCPD photo
DECLARED_SIZE = (720, 1160)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class CCPDAnnotation:
    """The fields of one CCPD file name.

    Attributes:
        name: the image path relative to the dataset root (as the split file lists it).
        area: the area field as written (its integer value).
        tilt: ``(horizontal, vertical)`` tilt degrees.
        box: ``(x1, y1, x2, y2)``: left-up and right-bottom corners, in pixels.
        vertices: the four corners ``((x, y), ...)`` in the name's order: right-bottom,
            left-bottom, left-up, right-up.
        plate_indices: the character indices as written.
        brightness: brightness of the plate region.
        blur: blurriness of the plate region.
    """

    name: str
    area: int
    tilt: tuple[int, int]
    box: tuple[int, int, int, int]
    vertices: tuple[tuple[int, int], ...]
    plate_indices: tuple[int, ...]
    brightness: int
    blur: int

    @property
    def plate(self) -> str:
        """The plate number, decoded with the authors' tables."""
        first, second, *rest = self.plate_indices
        return PROVINCES[first] + ALPHABETS[second] + "".join(ADS[i] for i in rest)

    @property
    def corners(self) -> np.ndarray:
        """(4, 2) corners clockwise from the left-up one (left-up, right-up, right-bottom,
        left-bottom), the order of the YOLO corners sidecar."""
        rb, lb, lu, ru = self.vertices
        return np.asarray([lu, ru, rb, lb], dtype=np.float64)


def _numbers(text: str, sep: str, count: int, what: str) -> tuple[int, ...]:
    parts = text.split(sep)
    if len(parts) != count or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(
            f"{what} must be {count} non-negative integers joined by {sep!r}, got {text!r}"
        )
    return tuple(int(p) for p in parts)


def _points(text: str, count: int, what: str) -> tuple[tuple[int, int], ...]:
    points = text.split("_")
    if len(points) != count:
        raise ValueError(f"{what} must be {count} 'x&y' points joined by '_', got {text!r}")
    return tuple(_numbers(p, "&", 2, what) for p in points)  # type: ignore[misc]


def parse_ccpd_name(name: str) -> CCPDAnnotation:
    """Parse the annotation fields of a CCPD image path (its file name carries them).

    Args:
        name: the path as the split file lists it (``ccpd_base/<fields>.jpg``) or a bare
            file name.

    Returns:
        The fields; ``name`` is kept as given.

    Raises:
        ValueError: naming what is malformed: not 7 ``-``-separated fields, a field of the
            wrong shape, a box with x1 >= x2 or y1 >= y2, a plate of another length than 7
            or 8 characters or an index outside the authors' tables.
    """
    stem = PurePosixPath(name).name.rsplit(".", 1)[0]
    fields = stem.split("-")
    if len(fields) != N_FIELDS:
        raise ValueError(
            f"expected {N_FIELDS} '-'-separated fields 'area-tilt-box-vertices-plate-brightness-"
            f"blur', got {len(fields)}"
        )
    area_text, tilt, box, vertices, plate, brightness, blur = fields
    (area,) = _numbers(area_text, "_", 1, "area")
    tilt_hv = _numbers(tilt, "_", 2, "tilt")
    (x1, y1), (x2, y2) = _points(box, 2, "bounding box")
    if x1 >= x2 or y1 >= y2:
        raise ValueError(f"bounding box {box!r} is empty (needs x1 < x2 and y1 < y2)")
    corners = _points(vertices, 4, "vertices")
    indices = tuple(int(p) if p.isascii() and p.isdigit() else -1 for p in plate.split("_"))
    if len(indices) not in PLATE_LENGTHS:
        raise ValueError(f"plate must have 7 or 8 character indices, got {plate!r}")
    tables = (PROVINCES, ALPHABETS) + (ADS,) * (len(indices) - 2)
    if any(not 0 <= i < len(t) for i, t in zip(indices, tables, strict=True)):
        raise ValueError(
            f"plate {plate!r}: an index is not an integer within the authors' tables "
            f"(provinces < {len(PROVINCES)}, alphabets < {len(ALPHABETS)}, ads < {len(ADS)})"
        )
    (bright,) = _numbers(brightness, "_", 1, "brightness")
    (blurriness,) = _numbers(blur, "_", 1, "blur")
    return CCPDAnnotation(
        name, area, tilt_hv, (x1, y1, x2, y2), corners, indices, bright, blurriness
    )  # type: ignore[arg-type]


class CCPDDataset(BoxDataset):
    """CCPD images with their one plate box (see the module docstring).

    Items are :mod:`miabench.data.boxes` items (letterboxed image, boxes in its pixels),
    batched with :func:`miabench.data.wider_face.collate`.

    Args:
        root: folder holding the ``ccpd_*`` folders (and ``splits/``).
        phase: a split file's stem (``train``, ``val``, ``test``, ``ccpd_tilt``, ...), or
            with ``split_dir=None`` a folder under ``root``.
        image_size: side of the square the images are letterboxed into.
        augment: random horizontal flip, for training.
        split_dir: folder of the split files under ``root``; None: read ``root/phase/``.
        declared_size: ``(width, height)`` every image must have; None: any size.
        invalid: ``error`` or ``skip`` (:mod:`miabench.data.boxes`).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        phase: str,
        image_size: int,
        augment: bool = False,
        split_dir: str | None = "splits",
        declared_size: Sequence[int] | None = DECLARED_SIZE,
        invalid: str = "error",
    ) -> None:
        super().__init__(root, phase, image_size, augment)
        self.split_dir = split_dir
        self.declared_size = None if declared_size is None else tuple(int(v) for v in declared_size)
        self.invalid = invalid
        guard = InvalidAnnotations(invalid)
        self._items: list[CCPDAnnotation] = []
        for where, name in self._listing():
            try:
                annotation = parse_ccpd_name(name)
                self._check_box(annotation)
            except ValueError as err:
                guard(f"{where}: {name}", str(err))
                continue
            self._items.append(annotation)
        missing = [a.name for a in self._items if not (self.root / a.name).is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FileNotFoundError(
                f"{self.searched()}: {len(missing)} listed image(s) not found under {self.root}: "
                f"{shown}"
            )
        self._count(len(self._items), 0, len(self._items), guard)

    def _listing(self) -> list[tuple[str, str]]:
        """``(where, name)`` of every listed image: the split file's line, or the folder."""
        if self.split_dir is None:
            folder = self.root / self.phase
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"CCPD folder {folder} does not exist (phase {self.phase!r})"
                )
            names = sorted(
                p.relative_to(self.root).as_posix()
                for p in folder.rglob("*")
                if listed_image(p, IMAGE_EXTENSIONS)
            )
            if not names:
                raise FileNotFoundError(f"no CCPD images in {folder}")
            return [(str(folder), n) for n in names]
        path = self.split_file
        if not path.is_file():
            raise FileNotFoundError(
                f"CCPD split file {path} not found (phase {self.phase!r}: expected "
                f"<root>/{self.split_dir}/<phase>.txt)"
            )
        listed, seen = [], set()
        for lineno, line in enumerate(read_text_lines(path), 1):
            name = line.strip()
            if not name:
                continue
            relative = PurePosixPath(name)
            # a hostile list must not reach outside the dataset
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"{path}:{lineno}: {name!r} is not a path inside the dataset")
            if name in seen:
                raise ValueError(f"{path}:{lineno}: {name!r} is listed twice")
            seen.add(name)
            listed.append((f"{path}:{lineno}", name))
        if not listed:
            raise ValueError(f"{path}: the split file lists no image")
        return listed

    @property
    def split_file(self) -> Path:
        """``<root>/<split_dir>/<phase>.txt``."""
        return self.root / str(self.split_dir) / f"{self.phase}.txt"

    def _check_box(self, annotation: CCPDAnnotation) -> None:
        if self.declared_size is None:
            return
        width, height = self.declared_size
        x1, y1, x2, y2 = annotation.box
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise ValueError(
                f"bounding box {annotation.box} outside the declared {width}x{height} image"
            )

    def image_path(self, entry: CCPDAnnotation) -> Path:
        return self.root / entry.name

    def pixel_boxes(self, entry: CCPDAnnotation, path: Path, width: int, height: int) -> np.ndarray:
        """The one plate box, after checking the decoded image against the declaration.

        Raises:
            ValueError: naming ``path``: the image is not of the declared size, or (no
                declared size) the box leaves it.
        """
        if self.declared_size is not None and (width, height) != self.declared_size:
            w, h = self.declared_size
            raise ValueError(f"{path}: image is {width}x{height}, CCPD images are {w}x{h}")
        x1, y1, x2, y2 = entry.box
        if x2 > width or y2 > height:
            raise ValueError(f"{path}: bounding box {entry.box} outside the {width}x{height} image")
        return np.asarray([entry.box], dtype=np.float32)

    def searched(self) -> str:
        return str(self.root / self.phase if self.split_dir is None else self.split_file)
