"""The served format of every segmentation dataset: decoding, tasks, transforms, records.

:class:`SegmentationDataset` turns a list of (image, label map) files into samples; the
readers of the published layouts (:mod:`miabench.data.segmentation`) subclass it and only
list their files and map their stored labels. Every dataset serves two tasks (``task``):

* ``segmentation``: ``input`` = image float [0, 1] (3, H, W), ``target`` = label map int64
  (H, W) with ``ignore_index`` (255) where the dataset has unlabelled pixels;
* ``label2photo``: ``input`` = one-hot float (K, H, W) of the label map (ignored pixels all
  zero; + one instance-boundary channel for Cityscapes with ``boundary``), ``target`` = image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from miabench.data.aligned import listed_image, read_rgb
from miabench.data.base import MembershipDataset
from miabench.data.membership import SampleRecord
from miabench.utils.hashing import cached_digest, settings_salt, sha256_array

IGNORE_INDEX = 255
TASKS = ("segmentation", "label2photo")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class SegSample:
    """One image with its label map (and, for Cityscapes, its instance map)."""

    sample_id: str
    image: Path
    label: Path
    instance: Path | None = None


def read_label(path: Path) -> np.ndarray:
    """Decode a label/mask file to a 2-D array of label values.

    Palette files keep their indices (the palette only colours them), grey and 16-bit files
    their values (int64 for 16-bit, range-checked by each dataset), bilevel files become
    0/255; colour files (e.g. Kvasir-SEG's JPEG masks) are read by their grey level, alpha
    dropped. Floating-point files are refused.

    Raises:
        ValueError: naming the file when it cannot be decoded or has an unexpected mode.
    """
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "F":
                raise ValueError("floating-point label file (mode F); save it as 8 or 16 bit")
            if image.mode in ("P", "L", "1"):
                array = np.asarray(image.convert("L") if image.mode == "1" else image)
            elif image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                array = np.asarray(image).astype(np.int64)
            else:
                # RGB masks (e.g. Kvasir-SEG's JPEG masks): the grey level carries the mask.
                array = np.asarray(image.convert("L"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: unreadable or corrupt label file ({err})") from err
    return array


def _images_by_stem(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if listed_image(p, IMAGE_EXTENSIONS):
            if p.stem in found:
                raise ValueError(
                    f"{folder}: two files with stem {p.stem!r} ({found[p.stem].name}, {p.name})"
                )
            found[p.stem] = p
    if not found:
        raise FileNotFoundError(f"{folder} holds no {what} files ({list(IMAGE_EXTENSIONS)})")
    return found


def pair_by_stem(images: Path, labels: Path, prefix: str) -> list[SegSample]:
    """Pair ``images/<stem>.*`` with ``labels/<stem>.*``; every image needs its label file.

    Raises:
        FileNotFoundError: a folder is missing, or an image has no label file (named).
    """
    image_files = _images_by_stem(images, "image")
    label_files = _images_by_stem(labels, "label")
    missing = [p.name for s, p in image_files.items() if s not in label_files]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise FileNotFoundError(
            f"{len(missing)} image(s) in {images} have no mask/label in {labels}: {shown}"
        )
    return [SegSample(f"{prefix}{s}", p, label_files[s]) for s, p in image_files.items()]


class SegmentationDataset(MembershipDataset):
    """Images with dense label maps; subclasses list the samples of their published layout.

    Preprocessing: without ``augment`` image and labels are resized to ``image_size``
    (square; labels by nearest neighbour) or kept at native size when it is None; with
    ``augment`` they are resized to ``load_size`` (``image_size`` if None), randomly cropped
    to ``image_size`` and randomly flipped, together.

    Args:
        root: dataset root (see :mod:`miabench.data.segmentation` for each layout).
        phase: which part to read (layout-specific, e.g. ``training`` for ADE20K).
        task: ``segmentation`` or ``label2photo`` (see this module's docstring).
        image_size: side of the served images.
        load_size: side before the random crop (augment only).
        augment: random crop and flip, for training.
    """

    entries_attr = "_samples"

    #: number of classes of the served label maps (without the ignore index)
    num_classes: int = 0

    def __init__(
        self,
        root: str | os.PathLike,
        phase: str,
        task: str = "segmentation",
        image_size: int | None = None,
        load_size: int | None = None,
        augment: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} does not exist")
        self.phase = phase
        self.task = task
        self.image_size = image_size
        self.load_size = load_size
        self.augment = augment
        self._samples = self._list_samples()
        if not self._samples:
            raise FileNotFoundError(
                f"{type(self).__name__}: no samples for phase {phase!r} in {self.root}"
            )
        self._records: list[SampleRecord] | None = None

    # -- layout ---------------------------------------------------------------------------

    def _list_samples(self) -> list[SegSample]:
        raise NotImplementedError

    def _labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Map a decoded label file to served labels in [0, num_classes) ∪ {255}."""
        raise NotImplementedError

    # -- decoding -------------------------------------------------------------------------

    def _label_files(self, sample: SegSample) -> list[Path]:
        """The files a sample's label map is decoded from (keys the content-hash cache)."""
        return [sample.label]

    def _read_labels(self, sample: SegSample) -> np.ndarray:
        """The served label map of a sample (layouts with one label file per image)."""
        return self._labels(read_label(sample.label), sample.label)

    def _decode(self, sample: SegSample) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        image = read_rgb(sample.image)
        labels = self._read_labels(sample)
        if labels.shape != image.shape[:2]:
            raise ValueError(
                f"{sample.label}: label map {labels.shape} does not match its image "
                f"{sample.image} {image.shape[:2]}"
            )
        instance = None
        if sample.instance is not None:
            instance = read_label(sample.instance).astype(np.int64)
        return image, labels, instance

    def _transform(self, *tensors: Any) -> tuple[Any, ...]:
        transforms: list[Any] = []
        if self.augment:
            side = self.load_size or self.image_size
            if side is not None:
                transforms.append(v2.Resize((side, side), antialias=True))
            if self.image_size is not None and side is not None and side > self.image_size:
                transforms.append(v2.RandomCrop(self.image_size))
            transforms.append(v2.RandomHorizontalFlip())
        elif self.image_size is not None:
            transforms.append(v2.Resize((self.image_size, self.image_size), antialias=True))
        # tv_tensors.Mask makes every geometric transform use nearest-neighbour for labels.
        return v2.Compose(transforms)(*tensors) if transforms else tensors

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self._samples[index]
        image, labels, instance = self._decode(sample)
        tensors: list[Any] = [
            tv_tensors.Image(torch.from_numpy(image.copy()).permute(2, 0, 1).contiguous()),
            tv_tensors.Mask(torch.from_numpy(labels.astype(np.int64))),
        ]
        if instance is not None and self.task == "label2photo":
            tensors.append(tv_tensors.Mask(torch.from_numpy(instance)))
        out = self._transform(*tensors)
        img = v2.functional.to_dtype(out[0].as_subclass(torch.Tensor), torch.float32, scale=True)
        lab = out[1].as_subclass(torch.Tensor).long()
        if self.task == "segmentation":
            return {"sample_id": sample.sample_id, "input": img, "target": lab}
        onehot = one_hot_labels(lab, self.num_classes)
        if len(out) > 2:
            onehot = torch.cat([onehot, instance_edges(out[2].as_subclass(torch.Tensor))[None]])
        return {"sample_id": sample.sample_id, "input": onehot, "target": img}

    # -- membership -----------------------------------------------------------------------

    def records(self) -> list[SampleRecord]:
        """One record per sample; ``sha256`` hashes the decoded image and served label map."""
        if self._records is None:
            records, salt = [], settings_salt(self)
            for s in self._samples:
                digest = cached_digest(
                    [s.image, *self._label_files(s)], lambda s=s: self._digest(s), salt
                )
                records.append(SampleRecord(s.sample_id, str(s.image), digest))
            self._records = records
        return list(self._records)

    def _digest(self, sample: SegSample) -> str:
        image, labels, _ = self._decode(sample)
        return sha256_array(
            np.concatenate([image.reshape(-1), labels.reshape(-1).astype(np.uint8)])
        )

    def entry_id(self, entry: SegSample) -> str:
        return entry.sample_id

    def repr_fields(self) -> list[str]:
        return [
            repr(str(self.root)),
            f"phase={self.phase!r}",
            f"n={len(self)}",
            f"task={self.task}",
            f"image_size={self.image_size}",
            f"augment={self.augment}",
        ]


def one_hot_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(H, W) labels -> (K, H, W) float one-hot; ignored (out-of-range) pixels all zero."""
    valid = (labels >= 0) & (labels < num_classes)
    onehot = F.one_hot(torch.where(valid, labels, 0), num_classes).permute(2, 0, 1).float()
    return onehot * valid.unsqueeze(0)


def instance_edges(instance: torch.Tensor) -> torch.Tensor:
    """pix2pixHD's ``get_edges``: 1 where a pixel's instance id differs from a 4-neighbour's."""
    edge = torch.zeros(instance.shape, dtype=torch.bool)
    dx = instance[:, 1:] != instance[:, :-1]
    dy = instance[1:, :] != instance[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    return edge.float()
