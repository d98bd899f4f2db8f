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

Every dataset serves two tasks (``task``):

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

from miabench.data.aligned import check_file_name, listed_image, read_rgb
from miabench.data.base import MembershipDataset
from miabench.data.membership import SampleRecord
from miabench.utils.hashing import cached_digest, settings_salt, sha256_array

IGNORE_INDEX = 255
TASKS = ("segmentation", "label2photo")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
LOSSY_EXTENSIONS = (".jpg", ".jpeg")

#: Cityscapes labelId -> trainId for the 19 evaluated classes (cityscapesScripts' labels.py);
#: every other labelId (0..33, and -1 for license plates) is ignored.
CITYSCAPES_LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_MAX_LABEL_ID = 33


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
        root: dataset root (see the module docstring for each layout).
        phase: which part to read (layout-specific, e.g. ``training`` for ADE20K).
        task: ``segmentation`` or ``label2photo`` (see the module docstring).
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

    def _decode(self, sample: SegSample) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        image = read_rgb(sample.image)
        labels = self._labels(read_label(sample.label), sample.label)
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
                digest = cached_digest([s.image, s.label], lambda s=s: self._digest(s), salt)
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
