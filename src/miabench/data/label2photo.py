"""Label→photo readers with the label encodings pix2pixHD and SPADE were trained on.

The segmentation readers (:mod:`miabench.data.segmentation`) serve the labels segmentation
models use: Cityscapes' 19 trainIds, ADE20K's 150 classes with "other" ignored. The
published label→photo models see other encodings, and this module serves those from the
same files:

* pix2pixHD and SPADE on Cityscapes: all 35 labelIds (``label_nc 35``), one channel per
  id, plus the instance-boundary channel; pictures resized to a fixed size that keeps the
  2:1 aspect ratio (pix2pixHD ``scale_width``, SPADE ``preprocess_mode fixed``) and randomly
  flipped for training, no crop.
* SPADE on ADE20K: 150 classes plus a "don't care" channel for annotation 0
  (``contain_dontcare_label``): channel ``c`` holds annotation ``c + 1``, the last channel
  annotation 0.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.transforms import v2

from miabench.data.segmentation import ADE20KDataset, CityscapesSegDataset
from miabench.data.segmentation_base import IGNORE_INDEX

#: pix2pixHD's and SPADE's ``label_nc`` for Cityscapes labelIds (0..33, with room for 34).
CITYSCAPES_LABEL_NC = 35


class CityscapesLabelIdsDataset(CityscapesSegDataset):
    """Cityscapes with the 35 raw labelIds as classes and a fixed, non-square picture size.

    Args:
        root: Cityscapes root (``leftImg8bit/`` and ``gtFine/``).
        phase: ``train``, ``val`` or ``test``.
        aspect_ratio: width / height of the served pictures (2 as published); the width is
            ``image_size``.
        **kwargs: see :class:`~miabench.data.segmentation.CityscapesSegDataset` (``task``,
            ``boundary``, ``image_size``, ``augment``). ``load_size`` is not used: the
            published label→photo recipes resize and flip, without cropping.
    """

    num_classes = CITYSCAPES_LABEL_NC

    def __init__(
        self, root: str | os.PathLike, phase: str, aspect_ratio: float = 2.0, **kwargs: Any
    ) -> None:
        if aspect_ratio <= 0:
            raise ValueError(f"aspect_ratio must be positive, got {aspect_ratio}")
        self.aspect_ratio = aspect_ratio
        super().__init__(root, phase, **kwargs)

    def _labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        # Every labelId is a class; anything else (e.g. 255, a license plate's -1 stored as
        # uint8) has no channel.
        return np.where(raw < self.num_classes, raw, IGNORE_INDEX).astype(np.uint8)

    def _transform(self, *tensors: Any) -> tuple[Any, ...]:
        transforms: list[Any] = []
        if self.image_size is not None:
            height = round(self.image_size / self.aspect_ratio)
            transforms.append(v2.Resize((height, self.image_size), antialias=True))
        if self.augment:
            transforms.append(v2.RandomHorizontalFlip())
        return v2.Compose(transforms)(*tensors) if transforms else tensors


class ADE20KDontCareDataset(ADE20KDataset):
    """ADE20K with SPADE's label order: annotation ``a`` in 1..150 → class ``a - 1``, and
    annotation 0 ("other") → class 150, a "don't care" channel of its own (151 in all).

    Args:
        root: ADE20K root.
        phase: ``training`` / ``validation`` (or the aliases).
        **kwargs: see :class:`~miabench.data.segmentation.ADE20KDataset`.
    """

    def __init__(self, root: str | os.PathLike, phase: str, **kwargs: Any) -> None:
        kwargs.setdefault("num_classes", 151)
        kwargs["reduce_zero_label"] = False
        super().__init__(root, phase, **kwargs)

    def _labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        labels = super()._labels(raw, path).astype(np.int64)  # range-checked, as stored
        last = self.num_classes - 1
        return np.where(labels == 0, last, labels - 1).astype(np.uint8)
