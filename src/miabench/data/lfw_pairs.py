"""LFW-style verification pairs: the protocol's ``pairs.txt``, its images and folds.

An evaluation-only benchmark of a face-recognition victim (``data.verification``): it is
never trained on nor drawn into a membership split.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from miabench.data.aligned import (
    read_rgb,
    read_text_lines,
)


@dataclass(frozen=True)
class Pair:
    """One verification pair: two image paths and whether they show the same identity."""

    first: Path
    second: Path
    same: bool


def read_pairs(
    pairs_path: str | os.PathLike, images_root: str | os.PathLike, extension: str = ".jpg"
) -> list[Pair]:
    """Parse an LFW ``pairs.txt``: ``name i j`` (same) or ``name1 i name2 j`` (different).

    A first line of one or two integers (folds, pairs per fold) is a header and skipped.
    Images are ``<images_root>/<name>/<name>_<i:04d><extension>`` as LFW stores them.

    Raises:
        ValueError: naming the file and line of a malformed row or a missing image.
    """
    pairs_path, root = Path(pairs_path), Path(images_root)
    lines = read_text_lines(pairs_path)
    pairs: list[Pair] = []

    def image(name: str, number: str, line_no: int) -> Path:
        path = root / name / f"{name}_{int(number):04d}{extension}"
        if not path.is_file():
            raise ValueError(f"{pairs_path}, line {line_no}: image {path} does not exist")
        return path

    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if line_no == 1 and all(f.isdigit() for f in fields) and len(fields) <= 2:
            continue
        try:
            if len(fields) == 3:
                name, i, j = fields
                pairs.append(Pair(image(name, i, line_no), image(name, j, line_no), True))
            elif len(fields) == 4:
                a, i, b, j = fields
                pairs.append(Pair(image(a, i, line_no), image(b, j, line_no), False))
            else:
                raise ValueError("expected 3 or 4 fields")
        except ValueError as err:
            if str(err).startswith(str(pairs_path)):
                raise
            raise ValueError(
                f"{pairs_path}, line {line_no}: malformed pair {line!r} ({err}); expected "
                "'name i j' or 'name1 i name2 j'"
            ) from err
    if not pairs:
        raise ValueError(f"{pairs_path} holds no pairs")
    return pairs


class PairsDataset(Dataset):
    """Both images of every pair, for embedding once: items ``{"first", "second", "same"}``.

    Args:
        pairs: from :func:`read_pairs`.
        image_size: side images are resized to.
        channels: 3 or 1.
    """

    def __init__(self, pairs: Sequence[Pair], image_size: int = 112, channels: int = 3) -> None:
        self.pairs = list(pairs)
        self.image_size = image_size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, path: Path) -> torch.Tensor:
        pixels = read_rgb(path)
        if self.channels == 1:
            pixels = np.asarray(Image.fromarray(pixels).convert("L"))
        tensor = torch.from_numpy(np.array(pixels))
        tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
        tensor = F.resize(tensor, [self.image_size] * 2, InterpolationMode.BILINEAR, antialias=True)
        return F.to_dtype(tensor, torch.float32, scale=True)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        return {
            "first": self._load(pair.first),
            "second": self._load(pair.second),
            "same": torch.tensor(pair.same),
        }


#: folds of the LFW protocol when a pairs file's header does not give their number
DEFAULT_FOLDS = 10
#: keys of a ``data.verification`` node
VERIFICATION_KEYS = ("pairs", "images", "extension", "name", "flip")


def read_pairs_header(pairs_path: str | os.PathLike) -> tuple[int, int] | None:
    """``(folds, pairs of each kind per fold)`` from a ``pairs.txt`` header, or None.

    LFW's View 2 file starts with ``10 300``: 10 folds, each 300 same-identity pairs then 300
    different-identity pairs. A one-number header (View 1's ``1100``) gives no folds.
    """
    with Path(pairs_path).open() as handle:
        fields = handle.readline().split()
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


class VerificationPairs:
    """An LFW-style verification benchmark (evaluation only): ``pairs.txt`` + images root.

    The pairs are neither members nor non-members and do not shape the victim; a victim that
    can verify faces embeds them in its utility pass
    (:meth:`~miabench.victims.face_recognition.FaceRecognitionVictim.benchmark_utility`).
    The files are checked on construction, the pairs read on first use.

    Args:
        pairs: LFW ``pairs.txt`` (see :func:`read_pairs`).
        images: root of ``<name>/<name>_<i:04d><extension>``.
        extension: image file ending.
        name: the benchmark's display name (its key in the results).
        flip: also embed each horizontally flipped image and add the two embeddings, as
            InsightFace's verification does.
        image_size: side the images are resized to (the victim's input size).
        channels: 3 or 1, as the victim's input.
        config_key: config path of this node, named in errors.

    Raises:
        FileNotFoundError: the pairs file or the images root does not exist (names the
            config key and the path).
    """

    def __init__(
        self,
        pairs: str | os.PathLike,
        images: str | os.PathLike,
        extension: str = ".jpg",
        name: str = "lfw",
        flip: bool = True,
        image_size: int = 112,
        channels: int = 3,
        config_key: str = "data.verification",
    ) -> None:
        self.pairs_path, self.images = Path(pairs), Path(images)
        if not self.pairs_path.is_file():
            raise FileNotFoundError(
                f"{config_key}.pairs: {self.pairs_path} does not exist (an LFW-style pairs.txt)"
            )
        if not self.images.is_dir():
            raise FileNotFoundError(
                f"{config_key}.images: {self.images} is not a folder of <name>/<name>_<i>"
                f"{extension} images"
            )
        self.extension = extension
        self.name = str(name)
        self.flip = bool(flip)
        self.image_size = image_size
        self.channels = channels
        header = read_pairs_header(self.pairs_path)
        #: cross-validation folds: the header's number when it gives one, else LFW's 10
        self.folds = header[0] if header is not None else DEFAULT_FOLDS
        self._header = header
        self._pairs: list[Pair] | None = None

    def pairs(self) -> list[Pair]:
        """The pairs in file order (read once).

        Raises:
            ValueError: a malformed file (see :func:`read_pairs`), a pair count that differs
                from the header's ``folds x 2 x per fold``, or fewer pairs than folds.
        """
        if self._pairs is None:
            pairs = read_pairs(self.pairs_path, self.images, self.extension)
            if self._header is not None and len(pairs) != 2 * self._header[0] * self._header[1]:
                folds, per_fold = self._header
                raise ValueError(
                    f"{self.pairs_path}: header announces {folds} folds of {per_fold} + "
                    f"{per_fold} pairs ({2 * folds * per_fold}), the file lists {len(pairs)}"
                )
            if len(pairs) < self.folds:
                raise ValueError(
                    f"{self.pairs_path}: {len(pairs)} pairs cannot fill {self.folds} folds"
                )
            self._pairs = pairs
        return self._pairs

    def dataset(self) -> PairsDataset:
        """Both images of every pair at the victim's input size, in file order."""
        return PairsDataset(self.pairs(), image_size=self.image_size, channels=self.channels)

    def describe(self) -> dict[str, Any]:
        """Where the benchmark comes from and how it is scored (recorded with the results)."""
        return {
            "pairs": str(self.pairs_path),
            "images": str(self.images),
            "flip": self.flip,
        }

    def __repr__(self) -> str:
        return f"VerificationPairs(name={self.name!r}, pairs={str(self.pairs_path)!r})"


def verification_pairs(
    spec: Mapping[str, Any] | None,
    image_size: int = 112,
    channels: int = 3,
    config_key: str = "data.verification",
) -> VerificationPairs | None:
    """Build the benchmark of a ``data.verification`` config node; None when it is null.

    Raises:
        ValueError: unknown keys or a missing ``pairs`` / ``images`` (named with
            ``config_key``).
        FileNotFoundError: see :class:`VerificationPairs`.
    """
    if spec is None:
        return None
    spec = dict(spec)
    unknown = sorted(set(spec) - set(VERIFICATION_KEYS))
    if unknown:
        raise ValueError(
            f"{config_key}: unknown key(s) {unknown}; expected {list(VERIFICATION_KEYS)}"
        )
    missing = [key for key in ("pairs", "images") if spec.get(key) is None]
    if missing:
        raise ValueError(f"{config_key}: set {', '.join(f'{config_key}.{k}' for k in missing)}")
    return VerificationPairs(
        **spec, image_size=image_size, channels=channels, config_key=config_key
    )
