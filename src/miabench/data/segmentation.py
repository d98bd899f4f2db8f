"""Segmentation datasets in their published layouts, for segmentation and label→photo victims.

Layouts read (all paths relative to ``root``):

* ADE20K SceneParsing: ``ADEChallengeData2016/images/{training,validation}/<stem>.jpg`` and
  ``ADEChallengeData2016/annotations/{training,validation}/<stem>.png`` (0 = "other", 1..150 =
  classes). ``root`` may also be the ``ADEChallengeData2016`` folder itself.
* Cityscapes: ``leftImg8bit/<phase>/<city>/<stem>_leftImg8bit.png`` and
  ``gtFine/<phase>/<city>/<stem>_gtFine_labelIds.png`` (+ ``_gtFine_instanceIds.png``);
  labelIds are mapped to the 19 trainIds, everything else to 255 (ignore).
* Polyps (PraNet): ``TrainDataset/{images,masks}`` and ``TestDataset/<name>/{images,masks}``
  (Kvasir-SEG as downloaded, ``{images,masks}`` directly under ``root``, is phase ``.``).
* COVID-SemiSeg (Inf-Net): ``TrainingSet/LungInfection-Train/Doctor-label/{Imgs,GT}`` and
  ``TestingSet/LungInfection-Test/{Imgs,GT}``.

Every dataset serves the two tasks of :mod:`miabench.data.segmentation_base` (``task``:
``segmentation`` or ``label2photo``), whose :class:`SegmentationDataset` holds the decoding,
transforms and records; the readers here only list a layout's files and map its labels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from miabench.data.aligned import check_file_name
from miabench.data.segmentation_base import (
    IGNORE_INDEX,
    SegmentationDataset,
    SegSample,
    pair_by_stem,
)

LOSSY_EXTENSIONS = (".jpg", ".jpeg")

#: Cityscapes labelId -> trainId for the 19 evaluated classes (cityscapesScripts' labels.py);
#: every other labelId (0..33, and -1 for license plates) is ignored.
CITYSCAPES_LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_MAX_LABEL_ID = 33


def _check_range(labels: np.ndarray, high: int, path: Path, what: str) -> None:
    bad = labels > high
    if bad.any():
        raise ValueError(
            f"{path}: label values {sorted(np.unique(labels[bad]).tolist())[:10]} outside {what}"
        )


class ADE20KDataset(SegmentationDataset):
    """ADE20K SceneParsing (``ADEChallengeData2016``), 150 classes.

    With ``reduce_zero_label`` (the default, as mmsegmentation does) label 0 ("other")
    becomes 255 (ignored) and 1..150 become 0..149. Without it labels are served as stored
    (0..num_classes-1), e.g. for the embedded scenes whose 0 is a real background class.

    Args:
        phase: ``training`` or ``validation`` (``train`` / ``val`` / ``test`` are aliases).
        num_classes: classes served (150 for ADE20K); stored labels above the range are an error.
        reduce_zero_label: map 0 to ignore and shift the rest down by one.
        **kwargs: see :class:`SegmentationDataset`.
    """

    #: the generic phase names of the split configs, mapped to ADE20K's folder names
    PHASE_ALIASES = {"train": "training", "val": "validation", "test": "validation"}

    def __init__(
        self,
        root: str | os.PathLike,
        phase: str,
        num_classes: int = 150,
        reduce_zero_label: bool = True,
        **kwargs: Any,
    ) -> None:
        self.num_classes = num_classes
        self.reduce_zero_label = reduce_zero_label
        super().__init__(root, self.PHASE_ALIASES.get(phase, phase), **kwargs)

    def _base(self) -> Path:
        nested = self.root / "ADEChallengeData2016"
        return nested if nested.is_dir() else self.root

    def _list_samples(self) -> list[SegSample]:
        base = self._base()
        return pair_by_stem(
            base / "images" / self.phase, base / "annotations" / self.phase, f"{self.phase}/"
        )

    def _labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        high = self.num_classes if self.reduce_zero_label else self.num_classes - 1
        _check_range(raw, high, path, f"0..{high}")
        if not self.reduce_zero_label:
            return raw.astype(np.uint8)
        return np.where(raw == 0, IGNORE_INDEX, raw.astype(np.int64) - 1).astype(np.uint8)


class CityscapesSegDataset(SegmentationDataset):
    """Cityscapes fine annotations: labelIds → 19 trainIds (255 ignore).

    Args:
        phase: ``train``, ``val`` or ``test``.
        boundary: with ``task=label2photo``, append pix2pixHD's instance-boundary channel
            (from ``*_gtFine_instanceIds.png``, required then).
        **kwargs: see :class:`SegmentationDataset`.
    """

    num_classes = 19

    def __init__(
        self, root: str | os.PathLike, phase: str, boundary: bool = False, **kwargs: Any
    ) -> None:
        self.boundary = boundary
        super().__init__(root, phase, **kwargs)
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        for label_id, train_id in CITYSCAPES_LABEL_TO_TRAIN.items():
            lut[label_id] = train_id
        self._lut = lut

    def _list_samples(self) -> list[SegSample]:
        images = self.root / "leftImg8bit" / self.phase
        labels = self.root / "gtFine" / self.phase
        for folder in (images, labels):
            if not folder.is_dir():
                raise FileNotFoundError(f"Cityscapes folder {folder} does not exist")
        need_instance = self.boundary and self.task == "label2photo"
        samples = []
        for image in sorted(images.glob("*/*_leftImg8bit.png")):
            check_file_name(image.parent)
            check_file_name(image)
            city, stem = image.parent.name, image.name.removesuffix("_leftImg8bit.png")
            label = labels / city / f"{stem}_gtFine_labelIds.png"
            if not label.is_file():
                raise FileNotFoundError(f"{image}: no label file {label}")
            instance = labels / city / f"{stem}_gtFine_instanceIds.png"
            if need_instance and not instance.is_file():
                raise FileNotFoundError(f"{image}: boundary=true needs {instance}")
            samples.append(
                SegSample(
                    f"{self.phase}/{city}/{stem}", image, label, instance if need_instance else None
                )
            )
        return samples

    def _labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        _check_range(
            raw, CITYSCAPES_MAX_LABEL_ID, path, f"Cityscapes labelIds 0..{CITYSCAPES_MAX_LABEL_ID}"
        )
        return self._lut[raw]


class BinaryMaskDataset(SegmentationDataset):
    """Binary masks served as labels {0 background, 1 foreground}.

    Lossless masks (PNG, ...) must hold 0/1, 0/255 or, 16-bit, 0/65535. JPEG masks (Kvasir-SEG's) hold grey
    levels in between from the compression, so they are thresholded at ``threshold``.
    """

    num_classes = 2
    threshold = 128

    def _labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        values = np.unique(raw)
        if path.suffix.lower() not in LOSSY_EXTENSIONS:
            # A lossless mask must be binary: {0, 1}, {0, 255} or (16-bit) {0, 65535}.
            found = set(values.tolist())
            if not any(found <= {0, high} for high in (1, 255, 65535)):
                raise ValueError(
                    f"{path}: binary mask has values {values.tolist()[:10]}; expected 0/1, "
                    "0/255 or 0/65535"
                )
            return (raw > 0).astype(np.uint8)
        return (raw >= self.threshold).astype(np.uint8)


class PolypDataset(BinaryMaskDataset):
    """PraNet's polyp layout (Kvasir-SEG, CVC-ClinicDB, ...).

    Args:
        phase: ``train`` (``TrainDataset``), ``test`` (``TestDataset/<test_set>``), the name
            of a test set (``TestDataset/<name>``), or ``.`` for ``root/{images,masks}``
            (Kvasir-SEG as downloaded).
        test_set: the test set ``test`` means.
        **kwargs: see :class:`SegmentationDataset`.
    """

    def __init__(
        self, root: str | os.PathLike, phase: str, test_set: str = "Kvasir", **kwargs: Any
    ) -> None:
        self.test_set = test_set
        super().__init__(root, phase, **kwargs)

    def _folder(self) -> Path:
        if self.phase == "train":
            return self.root / "TrainDataset"
        if self.phase == ".":
            return self.root
        return self.root / "TestDataset" / (self.test_set if self.phase == "test" else self.phase)

    def _list_samples(self) -> list[SegSample]:
        folder = self._folder()
        if not folder.is_dir():
            raise FileNotFoundError(f"polyp phase {self.phase!r}: folder {folder} does not exist")
        prefix = "" if self.phase == "." else f"{self.phase}/"
        return pair_by_stem(folder / "images", folder / "masks", prefix)


class CovidSemiSegDataset(BinaryMaskDataset):
    """Inf-Net's COVID-SemiSeg lung-infection layout.

    Args:
        phase: ``train`` (``TrainingSet/LungInfection-Train/Doctor-label``) or ``test``
            (``TestingSet/LungInfection-Test``).
    """

    FOLDERS = {
        "train": Path("TrainingSet/LungInfection-Train/Doctor-label"),
        "test": Path("TestingSet/LungInfection-Test"),
    }

    def _list_samples(self) -> list[SegSample]:
        if self.phase not in self.FOLDERS:
            raise ValueError(
                f"COVID-SemiSeg phase must be one of {list(self.FOLDERS)}, got {self.phase!r}"
            )
        folder = self.root / self.FOLDERS[self.phase]
        return pair_by_stem(folder / "Imgs", folder / "GT", f"{self.phase}/")
