"""The embedded edges2fashion garments with their Fashion-MNIST classes, for a classifier.

:func:`~miabench.data.embedded.fashion_mnist.build_edges2fashion` names each file by the item's index
in its Fashion-MNIST split (``train/000123.png`` is train item 123), so the garment half (B)
of every file has a known class. :class:`FashionClassesDataset` serves that half with its
class: the same files, sample ids and content hashes as the image-translation datasets, so
the same split settings give a classifier the same members and non-members as pix2pix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from miabench.data.aligned import AlignedDataset
from miabench.data.embedded.fashion_mnist import load_fashion_mnist

#: Fashion-MNIST's classes, in label order.
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: edges2fashion phase → Fashion-MNIST split the items were taken from
_TRAIN_SPLIT = {"train": True, "test": False}


class FashionClassesDataset(AlignedDataset):
    """Garments of an edges2fashion build, labelled with their Fashion-MNIST class.

    Items are ``{"sample_id", "input": FloatTensor[3, H, W] (the garment, B half),
    "target": int64 scalar (class 0..9)}``; resizing, cropping and flipping are
    :class:`~miabench.data.aligned.AlignedDataset`'s.

    Args:
        root: the edges2fashion build (``train/``, ``test/``).
        phase: ``train`` or ``test``.
        source_root: torchvision root of the raw Fashion-MNIST files (the build's parent,
            where the builder unpacked them, by default).
        search_dirs: folders with Debian's ``.gz`` files (see ``data/embedded/fashion_mnist.py``).
        direction: must be ``BtoB`` (the garment half is the input; the class the target).
        **kwargs: see :class:`~miabench.data.aligned.AlignedDataset`.

    Raises:
        ValueError: a phase other than train/test, or a file name that is not an item index
            of that split.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        phase: str,
        source_root: str | os.PathLike | None = None,
        search_dirs: Sequence[str | os.PathLike] | None = None,
        direction: str = "BtoB",
        **kwargs: Any,
    ) -> None:
        if phase not in _TRAIN_SPLIT:
            raise ValueError(f"{root}: phase must be one of {sorted(_TRAIN_SPLIT)}, got {phase!r}")
        if direction != "BtoB":
            raise ValueError(
                f"data.direction must be BtoB for a classifier of the garments, got {direction!r}"
            )
        super().__init__(root, phase, direction=direction, **kwargs)
        source = Path(source_root) if source_root is not None else self.root.parent
        _, labels = load_fashion_mnist(source, train=_TRAIN_SPLIT[phase], search_dirs=search_dirs)
        self._labels = {p.name: self._label_of(p, labels) for p in self._files}

    @staticmethod
    def _label_of(path: Path, labels: np.ndarray) -> int:
        try:
            index = int(path.stem)
        except ValueError:
            index = -1
        if not 0 <= index < len(labels):
            raise ValueError(
                f"{path}: not named by a Fashion-MNIST item index (0..{len(labels) - 1}); "
                "is this an edges2fashion build?"
            )
        return int(labels[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        label = self._labels[self._files[index].name]
        return {
            "sample_id": item["sample_id"],
            "input": item["input"],
            "target": torch.tensor(label),
        }
