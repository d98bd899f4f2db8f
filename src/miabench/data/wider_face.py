"""WIDER FACE in its published layout, for face-detection victims.

Layout (as distributed by the WIDER FACE authors)::

    <root>/WIDER_train/images/<event>/<name>.jpg
    <root>/WIDER_val/images/<event>/<name>.jpg
    <root>/wider_face_split/wider_face_train_bbx_gt.txt
    <root>/wider_face_split/wider_face_val_bbx_gt.txt

Each annotation record is an image path relative to ``images/``, a face count, then one
line per face: ``x1 y1 w h blur expression illumination invalid occlusion pose`` (the order
of the dataset's ``readme.txt``; torchvision's ``WIDERFace`` swaps ``invalid`` and
``occlusion``). An image with no face has a count of 0 followed by one placeholder line of
zeros, which is read and dropped.

Faces the annotation marks ``invalid``, and boxes of zero or negative width or height, are
not faces to learn or to find: WIDER's evaluation tools leave them out of the ground truth
and do not count detections on them as false positives. Here zero-size boxes are dropped,
and invalid boxes are kept with ``ignore = True``: victims train on the other boxes only,
and the mAP treats ignored boxes as COCO ``iscrowd`` regions (matches neither rewarded nor
penalised).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torchvision.transforms import InterpolationMode

from miabench.data.aligned import read_rgb, read_text_lines
from miabench.data.base import MembershipDataset
from miabench.data.membership import SampleRecord
from miabench.utils.hashing import cached_digest, settings_salt, sha256_array

PHASES = ("train", "val")
#: Values per face line: x1 y1 w h blur expression illumination invalid occlusion pose.
N_FIELDS = 10
INVALID_FIELD = 7
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def annotation_file(root: str | os.PathLike, phase: str) -> Path:
    """``<root>/wider_face_split/wider_face_<phase>_bbx_gt.txt``."""
    return Path(root) / "wider_face_split" / f"wider_face_{phase}_bbx_gt.txt"


def image_folder(root: str | os.PathLike, phase: str) -> Path:
    """``<root>/WIDER_<phase>/images``."""
    return Path(root) / f"WIDER_{phase}" / "images"


@dataclass(frozen=True)
class WiderAnnotation:
    """The faces of one image as the annotation file lists them.

    Attributes:
        name: image path relative to ``WIDER_<phase>/images``.
        boxes: (N, 4) float ``x1, y1, x2, y2`` in the original image's pixels, zero-size
            boxes already dropped.
        ignore: (N,) bool, True for faces marked ``invalid``.
        line: line number (1-based) of the record's file name, for error messages.
    """

    name: str
    boxes: np.ndarray
    ignore: np.ndarray
    line: int


def _ints(text: str, path: Path, lineno: int, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split()]
    except ValueError:
        raise ValueError(f"{path}:{lineno}: expected {what}, got {text!r}") from None


def parse_annotations(path: str | os.PathLike) -> list[WiderAnnotation]:
    """Parse a ``wider_face_<phase>_bbx_gt.txt`` file.

    Args:
        path: the annotation file.

    Returns:
        One :class:`WiderAnnotation` per image, in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the file and line, for a record that is cut short, a count that
            is not a non-negative integer, a face line without exactly 10 integers, a
            non-zero placeholder after a count of 0, or a file name seen twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"WIDER FACE annotation file not found: {path}")
    # WIDER's files end lines with "\n" and some face lines with a trailing space.
    lines = read_text_lines(path)
    records: list[WiderAnnotation] = []
    seen: set[str] = set()
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        start = i + 1
        i += 1
        if not name:  # blank lines between or after records carry nothing
            continue
        if not name.lower().endswith(IMAGE_EXTENSIONS):
            raise ValueError(f"{path}:{start}: expected an image path, got {name!r}")
        if name in seen:
            raise ValueError(f"{path}:{start}: image {name!r} is annotated twice")
        seen.add(name)
        if i >= len(lines):
            raise ValueError(f"{path}:{start}: record of {name!r} ends before its face count")
        count = _ints(lines[i], path, i + 1, "a face count")
        if len(count) != 1 or count[0] < 0:
            raise ValueError(f"{path}:{i + 1}: expected a face count >= 0, got {lines[i]!r}")
        n = count[0]
        i += 1
        # A count of 0 is followed by one placeholder line, as in the published files.
        n_lines = max(n, 1)
        if i + n_lines > len(lines):
            raise ValueError(
                f"{path}:{start}: record of {name!r} announces {n} face(s) but the file ends "
                f"after {len(lines) - i} line(s)"
            )
        faces = []
        for j in range(i, i + n_lines):
            values = _ints(lines[j], path, j + 1, f"{N_FIELDS} integers")
            if len(values) != N_FIELDS:
                raise ValueError(
                    f"{path}:{j + 1}: expected {N_FIELDS} integers "
                    f"(x1 y1 w h blur expression illumination invalid occlusion pose), "
                    f"got {len(values)}: {lines[j]!r}"
                )
            faces.append(values)
        i += n_lines
        if n == 0:
            if any(faces[0]):
                raise ValueError(
                    f"{path}:{i}: {name!r} has 0 faces, so this line should be the "
                    f"placeholder of zeros, got {lines[i - 1]!r}"
                )
            faces = []
        table = np.asarray(faces, dtype=np.float64).reshape(-1, N_FIELDS)
        keep = (table[:, 2] > 0) & (table[:, 3] > 0)  # zero-size boxes are not faces
        table = table[keep]
        boxes = np.concatenate([table[:, :2], table[:, :2] + table[:, 2:4]], axis=1)
        ignore = table[:, INVALID_FIELD] != 0
        records.append(WiderAnnotation(name, boxes.astype(np.float32), ignore, start))
    return records


def letterbox(
    image: torch.Tensor, boxes: torch.Tensor, size: int, flip: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize ``image`` (3, H, W) so its longer side is ``size``, pad to a square.

    The aspect ratio is kept (a face stays face-shaped) and padding goes right and below,
    so boxes only scale. ``flip`` mirrors the resized image and its boxes first.

    Returns:
        ``(image (3, size, size), boxes (N, 4) xyxy clipped to the resized image)``.
    """
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    image = F.resize(image, [new_h, new_w], InterpolationMode.BILINEAR, antialias=True)
    boxes = boxes * torch.tensor([new_w / width, new_h / height] * 2)
    if flip:
        image = F.horizontal_flip(image)
        boxes = torch.stack([new_w - boxes[:, 2], boxes[:, 1], new_w - boxes[:, 0], boxes[:, 3]], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, new_w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, new_h)
    image = F.pad(image, [0, 0, size - new_w, size - new_h])
    return image, boxes


class WiderFaceDataset(MembershipDataset):
    """Images and face boxes in the WIDER FACE layout.

    Items are dicts ``{"sample_id": "<phase>/<event>/<name>", "input": FloatTensor[3, S, S]
    in [0, 1], "boxes": FloatTensor[N, 4] (x1, y1, x2, y2 in the item's pixels),
    "ignore": BoolTensor[N]}``: each image letterboxed to ``image_size`` (see
    :func:`letterbox`); with ``augment`` randomly mirrored. Batch them with
    :func:`collate`, since images hold different numbers of faces.

    Boxes clipped to nothing by the image border are dropped, like zero-size boxes.

    Args:
        root: folder holding ``WIDER_<phase>/`` and ``wider_face_split/``.
        phase: ``train`` or ``val``.
        image_size: side of the square the images are letterboxed into.
        augment: random horizontal flip, for training.
    """

    entries_attr = "_items"

    def __init__(
        self, root: str | os.PathLike, phase: str, image_size: int, augment: bool = False
    ) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        self.root = Path(root)
        self.phase = phase
        self.image_size = int(image_size)
        self.augment = augment
        if not self.root.is_dir():
            raise FileNotFoundError(f"WIDER FACE root {self.root} does not exist")
        self.annotation_path = annotation_file(self.root, phase)
        self.folder = image_folder(self.root, phase)
        self._items = parse_annotations(self.annotation_path)
        missing = [a for a in self._items if not (self.folder / a.name).is_file()]
        if missing:
            shown = ", ".join(f"{a.name} (line {a.line})" for a in missing[:5])
            raise FileNotFoundError(
                f"{self.annotation_path}: {len(missing)} annotated image(s) not found under "
                f"{self.folder}: {shown}{' ...' if len(missing) > 5 else ''}"
            )
        self._records: list[SampleRecord] | None = None

    def sample_id(self, annotation: WiderAnnotation) -> str:
        """``<phase>/<event>/<name>``: unique across the two phases."""
        return f"{self.phase}/{annotation.name}"

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        annotation = self._items[index]
        pixels = np.array(read_rgb(self.folder / annotation.name))  # writable copy for torch
        image = F.to_dtype(torch.from_numpy(pixels).permute(2, 0, 1), torch.float32, scale=True)
        flip = self.augment and torch.rand(()).item() < 0.5
        boxes, ignore = torch.from_numpy(annotation.boxes), torch.from_numpy(annotation.ignore)
        image, boxes = letterbox(image, boxes, self.image_size, flip=flip)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return {
            "sample_id": self.sample_id(annotation),
            "input": image.clamp(0.0, 1.0),
            "boxes": boxes[keep],
            "ignore": ignore[keep],
        }

    def records(self) -> list[SampleRecord]:
        """One record per annotated image; ``sha256`` hashes its decoded RGB pixels.

        Computed once per dataset and shared with its subsets.
        """
        if self._records is None:
            salt = settings_salt(self)
            self._records = [
                SampleRecord(
                    self.sample_id(a),
                    str(self.folder / a.name),
                    cached_digest(
                        self.folder / a.name,
                        lambda a=a: sha256_array(read_rgb(self.folder / a.name)),
                        salt,
                    ),
                )
                for a in self._items
            ]
        return list(self._records)

    def entry_id(self, entry: WiderAnnotation) -> str:
        return self.sample_id(entry)

    def searched(self) -> str:
        return str(self.annotation_path)

    def repr_fields(self) -> list[str]:
        return [
            repr(str(self.root)),
            f"phase={self.phase}",
            f"n={len(self)}",
            f"image_size={self.image_size}",
            f"augment={self.augment}",
        ]


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch detection items: images stacked, per-image boxes kept as lists.

    The default collate cannot stack boxes, as images hold different numbers of faces.
    """
    return {
        "sample_id": [item["sample_id"] for item in items],
        "input": torch.stack([item["input"] for item in items]),
        "boxes": [item["boxes"] for item in items],
        "ignore": [item["ignore"] for item in items],
    }
