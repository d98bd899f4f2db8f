"""Boxes in the YOLO text layout, the export format of most license-plate datasets.

Layout (as Ultralytics YOLO and the Roboflow / CVAT / Label Studio exports write it)::

    <root>/images/<phase>/<name>.jpg        (or .png, .jpeg, .bmp, .tif, .tiff, .webp)
    <root>/labels/<phase>/<name>.txt        one object per line: class cx cy w h
    <root>/corners/<phase>/<name>.txt       optional, this project's sidecar (below)

or, with ``flat=True``, ``<root>/images/<name>.*`` and ``<root>/labels/<name>.txt`` for a
dataset exported without splits (every phase then reads the same folder; the membership
split draws members and non-members from it disjoint). Sub-folders of ``images/`` are read
too, and mirrored under ``labels/``.

``cx cy w h`` are the box centre and size as fractions of the image width and height; the
class is a non-negative integer. All boxes are one class (``plate``) for the victims;
``classes`` keeps only the listed class indices (the other lines are dropped and counted in
``counts["other_class_boxes"]``).

What is read as written, and what is refused (as Ultralytics' ``verify_image_label`` checks
the same files, with the box-edge tolerance below):

- an empty (or blank) label file is an image without objects, kept as a background image,
  as Ultralytics keeps it, and counted in ``counts["empty"]``;
- a missing label file, a line without exactly 5 fields, a non-numeric value, a class that
  is not a non-negative integer, a coordinate outside [0, 1], a box of zero size, or a box
  whose edges leave the image by more than ``tolerance`` (a fraction of the image side;
  edges within the tolerance are clipped to the image, as exporters round) are invalid: an
  error naming the file and line, or, with ``invalid=skip``, the image is skipped and counted
  (:mod:`miabench.data.boxes`).

The optional ``corners/`` sidecar (written by the embedded plates, see
:mod:`miabench.data.embedded.plate_composites`) holds, per label line, the four corners of
the plate as 8 fractions ``x y`` clockwise from the top-left corner. It is checked (one line
per label line, 8 values in [0, 1]) and exposed on the annotations (``corners``), not in the
items: the detectors learn boxes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from miabench.data.aligned import listed_image, read_text_lines
from miabench.data.boxes import BoxDataset, InvalidAnnotations

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: values per label line: class cx cy w h
N_FIELDS = 5
#: values per corners line: x y of the four corners
N_CORNER_VALUES = 8
#: how far (a fraction of the image side) a box edge may leave the image and be clipped
TOLERANCE = 0.01


@dataclass(frozen=True)
class YoloLabels:
    """The objects of one image as its label file lists them.

    Attributes:
        name: image path relative to the images folder (POSIX separators).
        classes: (N,) int64 class indices.
        boxes: (N, 4) float64 ``cx, cy, w, h`` fractions of the image size, clipped so that
            every box lies inside the image.
        corners: (N, 4, 2) float64 ``x, y`` fractions, clockwise from top-left, when the
            ``corners/`` sidecar has the image; else None.
    """

    name: str
    classes: np.ndarray
    boxes: np.ndarray
    corners: np.ndarray | None = None


def _clip_xywh(boxes: np.ndarray) -> np.ndarray:
    x1y1 = np.clip(boxes[:, :2] - boxes[:, 2:] / 2, 0.0, 1.0)
    x2y2 = np.clip(boxes[:, :2] + boxes[:, 2:] / 2, 0.0, 1.0)
    return np.concatenate([(x1y1 + x2y2) / 2, x2y2 - x1y1], axis=1)


def parse_label_file(
    path: str | os.PathLike, tolerance: float = TOLERANCE
) -> tuple[np.ndarray, np.ndarray]:
    """Read one YOLO label file.

    Args:
        path: the ``.txt`` file.
        tolerance: how far a box edge may leave the image (a fraction of its side) and be
            clipped back instead of refused.

    Returns:
        ``(classes (N,) int64, boxes (N, 4) float64 cx cy w h)``, boxes clipped to the
        image; ``N = 0`` for an empty or blank file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: ``<path>:<line>: ...`` for a line that is not ``class cx cy w h`` with
            an integer class >= 0 and a box of positive size inside the image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: label file not found (an image without objects needs an empty one)"
        )
    classes, boxes = [], []
    for lineno, line in enumerate(read_text_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != N_FIELDS:
            raise ValueError(
                f"{where}: expected {N_FIELDS} fields 'class cx cy w h', got {len(fields)}: "
                f"{line.strip()!r}"
            )
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise ValueError(f"{where}: expected numbers 'class cx cy w h', got {line!r}") from None
        if not all(np.isfinite(values)):
            raise ValueError(f"{where}: expected finite numbers 'class cx cy w h', got {line!r}")
        if values[0] < 0 or values[0] != int(values[0]):
            raise ValueError(f"{where}: class must be an integer >= 0, got {fields[0]!r}")
        box = np.asarray(values[1:])
        if (box < 0).any() or (box > 1).any():
            raise ValueError(
                f"{where}: box outside the image: cx cy w h must be fractions in [0, 1], "
                f"got {' '.join(fields[1:])}"
            )
        if box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"{where}: box of zero size (w {fields[3]}, h {fields[4]})")
        low, high = box[:2] - box[2:] / 2, box[:2] + box[2:] / 2
        if (low < -tolerance).any() or (high > 1 + tolerance).any():
            raise ValueError(
                f"{where}: box outside the image: edges x {low[0]:.4f}..{high[0]:.4f}, "
                f"y {low[1]:.4f}..{high[1]:.4f} leave [0, 1] by more than {tolerance}"
            )
        classes.append(int(values[0]))
        boxes.append(box)
    boxes_array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.asarray(classes, dtype=np.int64), _clip_xywh(boxes_array)


def parse_corners_file(path: str | os.PathLike, n_boxes: int) -> np.ndarray:
    """Read the corners sidecar of an image with ``n_boxes`` label lines.

    Returns:
        (n_boxes, 4, 2) float64 fractions.

    Raises:
        ValueError: naming the file (and line) when it has not one line of 8 fractions in
            [0, 1] per label line.
    """
    path = Path(path)
    rows = [line.split() for line in read_text_lines(path) if line.strip()]
    if len(rows) != n_boxes:
        raise ValueError(f"{path}: {len(rows)} corner line(s) for {n_boxes} label line(s)")
    corners = []
    for lineno, fields in enumerate(rows, 1):
        try:
            values = np.asarray([float(v) for v in fields])
        except ValueError:
            values = np.zeros(0)
        if values.shape != (N_CORNER_VALUES,) or not ((values >= 0) & (values <= 1)).all():
            raise ValueError(
                f"{path}:{lineno}: expected {N_CORNER_VALUES} fractions in [0, 1] "
                f"'x1 y1 x2 y2 x3 y3 x4 y4', got {' '.join(fields)!r}"
            )
        corners.append(values.reshape(4, 2))
    return np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2)


class YoloBoxesDataset(BoxDataset):
    """Images and one class of boxes in the YOLO text layout (see the module docstring).

    Items are :mod:`miabench.data.boxes` items (letterboxed image, boxes in its pixels),
    batched with :func:`miabench.data.wider_face.collate`.

    Args:
        root: folder holding ``images/`` and ``labels/``.
        phase: the split folder (``train``, ``val``, ``test``, ...); a label only with
            ``flat``.
        image_size: side of the square the images are letterboxed into.
        augment: random horizontal flip, for training.
        flat: ``images/`` and ``labels/`` hold the files directly (no split folders).
        classes: class indices that are the detected class; None: every class.
        invalid: ``error`` or ``skip`` (:mod:`miabench.data.boxes`).
        tolerance: how far a box edge may leave the image and be clipped (fraction).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        phase: str,
        image_size: int,
        augment: bool = False,
        flat: bool = False,
        classes: Sequence[int] | None = None,
        invalid: str = "error",
        tolerance: float = TOLERANCE,
    ) -> None:
        super().__init__(root, phase, image_size, augment)
        self.flat = bool(flat)
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self.tolerance = float(tolerance)
        guard = InvalidAnnotations(invalid)
        self.invalid = invalid
        parts = () if self.flat else (phase,)
        self.image_dir = self.root.joinpath("images", *parts)
        self.label_dir = self.root.joinpath("labels", *parts)
        self.corner_dir = self.root.joinpath("corners", *parts)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(
                f"YOLO images folder {self.image_dir} does not exist (expected "
                f"<root>/images/{'' if self.flat else '<phase>/'}<name>.jpg)"
            )
        images = sorted(p for p in self.image_dir.rglob("*") if listed_image(p, IMAGE_EXTENSIONS))
        if not images:
            raise FileNotFoundError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) in YOLO images folder {self.image_dir}"
            )
        self._items: list[YoloLabels] = []
        n_empty = n_boxes = n_other = 0
        for image in images:
            labels = self._read(image, guard)
            if labels is None:
                continue
            if self.classes is not None:
                keep = np.isin(labels.classes, self.classes)
                n_other += int((~keep).sum())
                corners = None if labels.corners is None else labels.corners[keep]
                labels = YoloLabels(labels.name, labels.classes[keep], labels.boxes[keep], corners)
            n_empty += len(labels.boxes) == 0
            n_boxes += len(labels.boxes)
            self._items.append(labels)
        self.counts["other_class_boxes"] = n_other
        self._count(len(self._items), n_empty, n_boxes, guard)

    def _read(self, image: Path, guard: InvalidAnnotations) -> YoloLabels | None:
        """The labels of one image, or None when it is invalid and skipped."""
        relative = image.relative_to(self.image_dir).with_suffix(".txt")
        label_path = self.label_dir / relative
        try:
            classes, boxes = parse_label_file(label_path, self.tolerance)
            corner_path = self.corner_dir / relative
            corners = parse_corners_file(corner_path, len(boxes)) if corner_path.is_file() else None
        except (FileNotFoundError, ValueError) as err:
            where, _, reason = str(err).partition(": ")
            guard(where, reason)
            return None
        return YoloLabels(image.relative_to(self.image_dir).as_posix(), classes, boxes, corners)

    def image_path(self, entry: YoloLabels) -> Path:
        return self.image_dir / entry.name

    def sample_id(self, entry: YoloLabels) -> str:
        """``<phase>/<name>``; ``<name>`` alone with ``flat`` (every phase is one folder)."""
        return entry.name if self.flat else f"{self.phase}/{entry.name}"

    def pixel_boxes(self, entry: YoloLabels, path: Path, width: int, height: int) -> np.ndarray:
        """The fractions scaled to the decoded image: any size is valid in this layout."""
        cxcy, wh = entry.boxes[:, :2], entry.boxes[:, 2:]
        xyxy = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1)
        return (xyxy * np.array([width, height, width, height])).astype(np.float32)

    def searched(self) -> str:
        return str(self.image_dir)
