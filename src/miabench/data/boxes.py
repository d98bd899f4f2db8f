"""Shared by the one-class box readers (CCPD, the YOLO text layout): the item a detection
victim reads, and what happens to an image whose annotation cannot be trusted.

Items are those of :class:`~miabench.data.wider_face.WiderFaceDataset`, so the detection
victims, attacks and :func:`~miabench.data.wider_face.collate` serve them unchanged:
``{"sample_id", "input": FloatTensor[3, S, S] in [0, 1], "boxes": FloatTensor[N, 4] xyxy
in the item's pixels, "ignore": BoolTensor[N]}`` (no box is ignored in these layouts).

Invalid annotations (a malformed file name, a label line with the wrong number of fields,
a box outside the image, ...) follow the reader's ``invalid`` setting:

- ``error`` (default): a ``ValueError`` naming the file (and line) and what was expected;
- ``skip``: the image is left out, and counted: ``dataset.skipped`` lists ``(file,
  reason)``, ``dataset.counts["skipped"]`` their number, and one warning names how many
  were skipped and the first reasons. Nothing is skipped silently.
"""

from __future__ import annotations

import logging
import os
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from miabench.data.aligned import read_rgb
from miabench.data.base import MembershipDataset
from miabench.data.membership import SampleRecord
from miabench.data.wider_face import letterbox
from miabench.utils.hashing import cached_digest, settings_salt, sha256_array

log = logging.getLogger(__name__)

#: what a reader does with an image whose annotation is invalid
INVALID_POLICIES = ("error", "skip")
#: reasons shown in the warning about skipped images
_SHOWN = 5


class InvalidAnnotations:
    """Applies a reader's ``invalid`` policy: raise, or record the image as skipped.

    Args:
        policy: ``error`` or ``skip`` (see the module docstring).
        key: the config key holding the policy, named in errors.
    """

    def __init__(self, policy: str, key: str = "data.invalid") -> None:
        if policy not in INVALID_POLICIES:
            raise ValueError(f"{key} must be one of {INVALID_POLICIES}, got {policy!r}")
        self.policy = policy
        self.key = key
        self.skipped: list[tuple[str, str]] = []

    def __call__(self, where: str, reason: str) -> None:
        """One invalid annotation: ``where`` names the file (and line), ``reason`` what is
        wrong and what was expected.

        Raises:
            ValueError: ``f"{where}: {reason}"`` under the ``error`` policy.
        """
        if self.policy == "error":
            raise ValueError(f"{where}: {reason} (or set {self.key}=skip to leave such images out)")
        self.skipped.append((where, reason))

    def report(self, source: str, kept: int) -> None:
        """Warn once with the number of skipped images and the first reasons."""
        if not self.skipped:
            return
        shown = "; ".join(f"{w}: {r}" for w, r in self.skipped[:_SHOWN])
        more = f" (+{len(self.skipped) - _SHOWN} more)" if len(self.skipped) > _SHOWN else ""
        log.warning(
            "%s: skipped %d image(s) with invalid annotations (%s=skip), kept %d: %s%s",
            source,
            len(self.skipped),
            self.key,
            kept,
            shown,
            more,
        )


class BoxDataset(MembershipDataset):
    """Images with one class of boxes, letterboxed for a detection victim.

    A subclass fills ``self._items`` (entries with a ``name``: the image path relative to
    its folder) and implements :meth:`image_path` and :meth:`pixel_boxes`.

    Args:
        root: the dataset folder.
        phase: the split served (its meaning is the layout's).
        image_size: side of the square the images are letterboxed into.
        augment: random horizontal flip, for training.
    """

    entries_attr = "_items"
    _items: list[Any]

    def __init__(
        self, root: str | os.PathLike, phase: str, image_size: int, augment: bool = False
    ) -> None:
        self.root = Path(root)
        self.phase = phase
        self.image_size = int(image_size)
        self.augment = augment
        if not self.root.is_dir():
            raise FileNotFoundError(f"{type(self).__name__} root {self.root} does not exist")
        self._records: list[SampleRecord] | None = None
        #: images read, images without boxes, boxes, images skipped (``invalid=skip``), ...
        self.counts: dict[str, int] = {}
        #: ``(file, reason)`` of every image left out under ``invalid=skip``
        self.skipped: list[tuple[str, str]] = []

    @abstractmethod
    def image_path(self, entry: Any) -> Path:
        """The image file of one entry."""

    @abstractmethod
    def pixel_boxes(self, entry: Any, path: Path, width: int, height: int) -> np.ndarray:
        """(N, 4) float32 ``x1, y1, x2, y2`` boxes in the decoded image's pixels.

        Raises:
            ValueError: naming ``path``, when the decoded image contradicts the annotation.
        """

    def sample_id(self, entry: Any) -> str:
        """``<phase>/<name>``."""
        return f"{self.phase}/{entry.name}"

    def _count(self, n_images: int, n_empty: int, n_boxes: int, guard: InvalidAnnotations) -> None:
        self.skipped = list(guard.skipped)
        self.counts.update(
            images=n_images, empty=n_empty, boxes=n_boxes, skipped=len(guard.skipped)
        )
        guard.report(self.searched(), n_images)
        log.info("%s: %s", self.searched(), self.counts)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self._items[index]
        path = self.image_path(entry)
        pixels = read_rgb(path)
        height, width = pixels.shape[:2]
        boxes = torch.from_numpy(self.pixel_boxes(entry, path, width, height).astype(np.float32))
        image = F.to_dtype(
            torch.from_numpy(np.array(pixels)).permute(2, 0, 1), torch.float32, scale=True
        )
        flip = self.augment and torch.rand(()).item() < 0.5
        image, boxes = letterbox(image, boxes.reshape(-1, 4), self.image_size, flip=flip)
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        return {
            "sample_id": self.sample_id(entry),
            "input": image.clamp(0.0, 1.0),
            "boxes": boxes,
            "ignore": torch.zeros(len(boxes), dtype=torch.bool),
        }

    def records(self) -> list[SampleRecord]:
        """One record per image; ``sha256`` hashes its decoded RGB pixels (computed once per
        dataset and shared with its subsets)."""
        if self._records is None:
            salt = settings_salt(self)
            self._records = []
            for entry in self._items:
                path = self.image_path(entry)
                digest = cached_digest(path, lambda p=path: sha256_array(read_rgb(p)), salt)
                self._records.append(SampleRecord(self.sample_id(entry), str(path), digest))
        return list(self._records)

    def entry_id(self, entry: Any) -> str:
        return self.sample_id(entry)

    def repr_fields(self) -> list[str]:
        return [
            repr(str(self.root)),
            f"phase={self.phase}",
            f"n={len(self)}",
            f"image_size={self.image_size}",
            f"augment={self.augment}",
            f"skipped={len(self.skipped)}",
        ]
