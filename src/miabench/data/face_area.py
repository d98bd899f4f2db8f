"""Face-area segmentation data in its published layouts: CelebAMask-HQ and a mask folder.

Layouts read (all paths relative to ``root``):

* CelebAMask-HQ (Lee et al., CVPR 2020), as downloaded, plus CelebA's partition list:

  - ``CelebA-HQ-img/<k>.jpg``: the 30,000 images (1024x1024), ``k`` = 0..29999;
  - ``CelebAMask-HQ-mask-anno/<k // 2000>/<k:05d>_<part>.png``: one binary mask (512x512)
    per annotated part, 18 parts (:data:`CELEBAMASK_PARTS`; with the background, the
    dataset's 19 classes). A part absent from an image has no file;
  - ``CelebA-HQ-to-CelebA-mapping.txt``: a header ``idx orig_idx orig_file``, then one row
    per image: ``k``, its CelebA index and its CelebA file name;
  - ``list_eval_partition.txt`` (from CelebA's ``Eval/`` folder, not in the CelebAMask-HQ
    archive): ``<orig_file> <0|1|2>``, CelebA's train / val / test partition. Phases
    ``train``, ``val``, ``test`` are the CelebA-HQ images whose CelebA original is in that
    partition (the authors' ``g_partition.py`` splits by index ranges instead; the
    partition file is CelebA's own definition, by file name).

  The part masks are merged into the configured class set (``classes``: class name -> parts;
  background is class 0, the classes follow in the configured order, a later class drawn
  over an earlier one where both cover a pixel, as the authors' ``g_mask.py`` draws later
  parts over earlier ones); parts no class names stay background. The image is resized
  (antialiased) to the masks' size, the annotation resolution.

* Mask folder (the generic export layout): ``images/<phase>/<name>.<ext>`` and
  ``masks/<phase>/<name>.png``, a single-channel lossless mask whose pixel values are class
  ids (0..K-1 for the K configured ``classes``, 255 = unlabelled). The embedded face-area
  set (:mod:`miabench.data.embedded.face_area`) is written in this layout.

Hostile input: malformed mask names, unknown parts, masks in the wrong ``k // 2000`` folder
or of the wrong size, images without any part mask, unreadable mapping or partition rows,
colour or lossy masks and out-of-range class ids are each a ``ValueError`` or
``FileNotFoundError`` naming the file (and line); nothing is skipped silently.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from miabench.data.aligned import check_file_name, read_rgb, read_text_lines
from miabench.data.segmentation_base import (
    IGNORE_INDEX,
    SegmentationDataset,
    SegSample,
    pair_by_stem,
    read_label,
)

#: CelebAMask-HQ's part names, in the order of the authors' ``g_mask.py`` (label_list)
CELEBAMASK_PARTS = (
    "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)  # fmt: skip
#: the ``k // 2000`` folders of ``CelebAMask-HQ-mask-anno``
IMAGES_PER_FOLDER = 2000
#: CelebA's partition codes
PARTITIONS = {"train": 0, "val": 1, "test": 2}
IMAGE_FOLDER = "CelebA-HQ-img"
MASK_FOLDER = "CelebAMask-HQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
PARTITION_FILE = "list_eval_partition.txt"
_PART_FILE = re.compile(r"^(\d{5})_([a-z_]+)\.png$")
#: PIL modes of a single-channel mask (class ids stored as grey levels or palette indices)
SINGLE_CHANNEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N")


def parse_classes(classes: Mapping[str, Sequence[str]], key: str = "data.classes") -> dict:
    """Check a class set ``{class name: [CelebAMask-HQ parts]}`` and return it as plain types.

    Raises:
        ValueError: naming ``key`` for an empty set, a class without parts, parts given as
            a string, an unknown part, a part in two classes or a class named background.
    """
    if not isinstance(classes, Mapping) or not classes:
        raise ValueError(f"{key}: expected a mapping of class name -> parts, got {classes!r}")
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for name, parts in classes.items():
        name = str(name)
        if name == "background":
            raise ValueError(f"{key}: 'background' is class 0 implicitly; do not list it")
        if isinstance(parts, str) or not isinstance(parts, Sequence) or not parts:
            raise ValueError(f"{key}.{name}: expected a non-empty list of parts, got {parts!r}")
        for part in map(str, parts):
            if part not in CELEBAMASK_PARTS:
                raise ValueError(
                    f"{key}.{name}: unknown part {part!r}; CelebAMask-HQ parts: "
                    f"{', '.join(CELEBAMASK_PARTS)}"
                )
            if part in owner:
                raise ValueError(f"{key}: part {part!r} is in both {owner[part]!r} and {name!r}")
            owner[part] = name
        out[name] = [str(p) for p in parts]
    return out


@dataclass(frozen=True)
class PartSample(SegSample):
    """A CelebAMask-HQ image with its part masks (``label`` is the mask folder)."""

    parts: tuple[tuple[str, Path], ...] = ()


def _binary_part(path: Path, size: int) -> np.ndarray:
    """A part mask as bool (size, size); it must hold at most two values (0 and one level)."""
    raw = read_label(path)
    if raw.shape != (size, size):
        raise ValueError(
            f"{path}: part mask is {raw.shape[1]}x{raw.shape[0]}, expected {size}x{size} "
            f"(data.mask_size)"
        )
    values = np.unique(raw)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        raise ValueError(
            f"{path}: part mask has values {values.tolist()[:10]}; expected 0 and one "
            "foreground level (a resized or lossy mask?)"
        )
    return raw > 0


class CelebAMaskHQDataset(SegmentationDataset):
    """CelebAMask-HQ: part masks merged into a class set, CelebA's partition as phases.

    Args:
        root: the CelebAMask-HQ folder (see this module's docstring).
        phase: ``train``, ``val`` or ``test`` (CelebA's partition of each image's original).
        classes: class name -> CelebAMask-HQ parts (:func:`parse_classes`); background is 0.
        mask_size: side of the part masks (512 as published); any other size is an error.
        partition_file: CelebA's partition list, relative to ``root`` (or absolute).
        **kwargs: see :class:`SegmentationDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        phase: str,
        classes: Mapping[str, Sequence[str]],
        mask_size: int = 512,
        partition_file: str = PARTITION_FILE,
        **kwargs: Any,
    ) -> None:
        if phase not in PARTITIONS:
            raise ValueError(
                f"CelebAMask-HQ phase must be one of {list(PARTITIONS)}, got {phase!r}"
            )
        self.classes = parse_classes(classes)
        self.num_classes = len(self.classes) + 1
        # a str setting, so the content-hash cache keys the class set (settings_salt)
        self.classes_key = json.dumps(self.classes, sort_keys=False)
        self.mask_size = int(mask_size)
        self.partition_file = partition_file
        super().__init__(root, phase, **kwargs)

    # -- listing --------------------------------------------------------------------------

    def _mapping(self) -> dict[int, str]:
        """``k -> CelebA file name`` from the mapping file (header ``idx orig_idx orig_file``)."""
        path = self.root / MAPPING_FILE
        if not path.is_file():
            raise FileNotFoundError(f"CelebAMask-HQ mapping file {path} does not exist")
        lines = read_text_lines(path)
        if not lines or lines[0].split() != ["idx", "orig_idx", "orig_file"]:
            raise ValueError(f"{path}:1: expected the header 'idx orig_idx orig_file'")
        out: dict[int, str] = {}
        for number, line in enumerate(lines[1:], start=2):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit():
                raise ValueError(
                    f"{path}:{number}: expected 'idx orig_idx orig_file', got {line!r}"
                )
            k = int(fields[0])
            if k in out:
                raise ValueError(f"{path}:{number}: idx {k} listed twice")
            out[k] = fields[2]
        return out

    def _partition(self) -> dict[str, int]:
        """CelebA file name -> partition code, from ``list_eval_partition.txt``."""
        path = Path(self.partition_file)
        path = path if path.is_absolute() else self.root / path
        if not path.is_file():
            raise FileNotFoundError(
                f"CelebA partition list {path} does not exist: copy CelebA's "
                f"Eval/{PARTITION_FILE} there or set data.partition_file"
            )
        out: dict[str, int] = {}
        for number, line in enumerate(read_text_lines(path), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}:{number}: expected '<file> <0|1|2>', got {line!r}")
            out[fields[0]] = int(fields[1])
        return out

    def _part_files(self) -> dict[int, dict[str, Path]]:
        """Every part mask under ``CelebAMask-HQ-mask-anno``, checked by name and folder."""
        base = self.root / MASK_FOLDER
        if not base.is_dir():
            raise FileNotFoundError(f"CelebAMask-HQ mask folder {base} does not exist")
        found: dict[int, dict[str, Path]] = {}
        for folder in sorted(base.iterdir()):
            if folder.name.startswith("."):
                continue
            check_file_name(folder)
            if not folder.is_dir() or not folder.name.isdigit():
                raise ValueError(f"{folder}: expected only the folders 0, 1, ... (k // 2000)")
            for path in sorted(folder.iterdir()):
                if path.name.startswith("."):
                    continue
                check_file_name(path)
                match = _PART_FILE.match(path.name)
                if match is None:
                    raise ValueError(f"{path}: part mask name is not '<k:05d>_<part>.png'")
                k, part = int(match.group(1)), match.group(2)
                if part not in CELEBAMASK_PARTS:
                    raise ValueError(
                        f"{path}: unknown part {part!r}; CelebAMask-HQ parts: "
                        f"{', '.join(CELEBAMASK_PARTS)}"
                    )
                if k // IMAGES_PER_FOLDER != int(folder.name):
                    raise ValueError(
                        f"{path}: image {k} belongs in folder {k // IMAGES_PER_FOLDER}, "
                        f"not {folder.name}"
                    )
                found.setdefault(k, {})[part] = path
        return found

    def _list_samples(self) -> list[SegSample]:
        mapping, partition = self._mapping(), self._partition()
        code = PARTITIONS[self.phase]
        unknown = [f for f in mapping.values() if f not in partition]
        if unknown:
            raise ValueError(
                f"{self.root / MAPPING_FILE}: {len(unknown)} CelebA file(s) not in the "
                f"partition list: {', '.join(unknown[:5])}"
            )
        parts = self._part_files()
        wanted = {p for ps in self.classes.values() for p in ps}
        samples: list[SegSample] = []
        for k in sorted(mapping):
            if partition[mapping[k]] != code:
                continue
            image = self.root / IMAGE_FOLDER / f"{k}.jpg"
            if not image.is_file():
                raise FileNotFoundError(f"{image}: listed in {MAPPING_FILE} but missing")
            folder = self.root / MASK_FOLDER / str(k // IMAGES_PER_FOLDER)
            if k not in parts:
                raise FileNotFoundError(f"{image}: no part mask {folder}/{k:05d}_<part>.png")
            mine = tuple((p, path) for p, path in sorted(parts[k].items()) if p in wanted)
            samples.append(PartSample(f"{self.phase}/{k}", image, folder, parts=mine))
        return samples

    # -- decoding -------------------------------------------------------------------------

    def _label_files(self, sample: SegSample) -> list[Path]:
        assert isinstance(sample, PartSample)
        return [path for _, path in sample.parts]

    def _read_labels(self, sample: SegSample) -> np.ndarray:
        assert isinstance(sample, PartSample)
        labels = np.zeros((self.mask_size, self.mask_size), dtype=np.uint8)
        present = dict(sample.parts)
        for index, parts in enumerate(self.classes.values(), start=1):
            for part in parts:
                if part in present:
                    labels[_binary_part(present[part], self.mask_size)] = index
        return labels

    def _decode(self, sample: SegSample) -> tuple[np.ndarray, np.ndarray, None]:
        image = read_rgb(sample.image)
        height, width = image.shape[:2]
        if height != width:
            raise ValueError(f"{sample.image}: image is {width}x{height}; CelebA-HQ is square")
        if height != self.mask_size:
            # the masks are the annotation resolution: the 1024x1024 image is brought to them
            image = np.asarray(Image.fromarray(image).resize((self.mask_size,) * 2, Image.BILINEAR))
        return image, self._read_labels(sample), None

    def repr_fields(self) -> list[str]:
        return [*super().repr_fields(), f"classes={list(self.classes)}"]


class MaskFolderDataset(SegmentationDataset):
    """``images/<phase>/<name>.<ext>`` with ``masks/<phase>/<name>.png`` of class ids.

    Args:
        root: folder holding ``images/`` and ``masks/``.
        phase: the sub-folder read (``train``, ``val``, ``test``, ...).
        classes: class names; mask value ``i`` is ``classes[i]`` (255 = unlabelled).
        **kwargs: see :class:`SegmentationDataset`.
    """

    def __init__(
        self, root: str | os.PathLike, phase: str, classes: Sequence[str], **kwargs: Any
    ) -> None:
        if isinstance(classes, str) or len(classes) < 2:
            raise ValueError(f"data.classes: expected a list of >= 2 class names, got {classes!r}")
        self.classes = [str(c) for c in classes]
        self.num_classes = len(self.classes)
        self.classes_key = json.dumps(self.classes)
        super().__init__(root, phase, **kwargs)

    def _list_samples(self) -> list[SegSample]:
        samples = pair_by_stem(
            self.root / "images" / self.phase, self.root / "masks" / self.phase, f"{self.phase}/"
        )
        for sample in samples:
            if sample.label.suffix.lower() != ".png":
                raise ValueError(f"{sample.label}: masks must be lossless PNG files of class ids")
        return samples

    def _labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        bad = (raw >= self.num_classes) & (raw != IGNORE_INDEX)
        if bad.any():
            raise ValueError(
                f"{path}: mask values {sorted(np.unique(raw[bad]).tolist())[:10]} are not class "
                f"ids 0..{self.num_classes - 1} (data.classes) or {IGNORE_INDEX} (unlabelled)"
            )
        return raw.astype(np.uint8)

    def _read_labels(self, sample: SegSample) -> np.ndarray:
        try:
            with Image.open(sample.label) as image:  # reads the header only
                mode = image.mode
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError(f"{sample.label}: unreadable or corrupt mask ({err})") from err
        if mode not in SINGLE_CHANNEL_MODES:
            raise ValueError(
                f"{sample.label}: mask mode {mode}; expected one channel of class ids "
                f"({', '.join(SINGLE_CHANNEL_MODES)})"
            )
        return super()._read_labels(sample)

    def repr_fields(self) -> list[str]:
        return [*super().repr_fields(), f"classes={self.classes}"]
