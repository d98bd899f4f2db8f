"""Embedded segmentation data: Fashion-MNIST items pasted onto textured canvases.

Two sets, each built once (atomically, with a completion marker) in a published layout so
the real readers of :mod:`miabench.data.segmentation` serve them:

* ``fashion_scenes`` (:func:`build_fashion_scenes`): a few items per canvas, label = item
  class + 1, background = 0, in the ADE20K layout
  (``ADEChallengeData2016/{images,annotations}/{training,validation}/``). Read it with
  ``ADE20KDataset(num_classes=11, reduce_zero_label=False)``: background is a class here.
  :class:`FashionScenesDataset` reads the same build with fewer classes (a class-count
  knob: the ten item classes merged into ``num_classes - 1`` groups), so one set of images,
  members and non-members serves label maps of 2 to 11 classes.
* ``fashion_polyps`` (:func:`build_fashion_polyps`): one item per canvas, mask = the item,
  in PraNet's polyp layout (``TrainDataset/`` and ``TestDataset/Fashion/``, each with
  ``images/`` and ``masks/``). Read it with ``PolypDataset``.

Canvases are a smooth random colour field plus pixel noise and items are tinted with a
random colour, so every image carries detail a network can only reproduce by memorising.
Training images come from Fashion-MNIST's train split, the held-out ones from its test split.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from miabench.data.embedded.build import build_once, completed_build
from miabench.data.embedded.fashion_mnist import load_fashion_mnist
from miabench.data.segmentation import ADE20KDataset
from miabench.utils.hashing import sha256_array

#: Bumped when the rendering changes, so an old folder is not mistaken for a new build.
RENDER_VERSION = 1
#: Fashion-MNIST grey level above which a pixel belongs to the item.
ITEM_THRESHOLD = 40
#: Fashion-MNIST classes; a scene's stored labels are 0 (background) and 1..ITEM_CLASSES.
ITEM_CLASSES = 10
#: Name of the embedded polyp test set (``TestDataset/<name>``).
POLYP_TEST_NAME = "Fashion"

Renderer = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _canvas(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour field + pixel noise, float (size, size, 3) in [0, 1]."""
    coarse = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC)) / 255.0
    return np.clip(0.6 * field + 0.2 + rng.normal(0.0, 0.06, (size, size, 3)), 0.0, 1.0)


def _paste(
    canvas: np.ndarray, item: np.ndarray, rng: np.random.Generator, side: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """Paste a tinted, resized item at a random place; return its full-canvas mask."""
    size = canvas.shape[0]
    grey = np.asarray(Image.fromarray(item).resize((side, side), Image.BICUBIC)).astype(float)
    mask_small = grey > ITEM_THRESHOLD
    top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    tint = 0.3 + 0.7 * rng.random(3)
    alpha = (grey / 255.0)[..., None]
    patch = canvas[top : top + side, left : left + side]
    patch[:] = np.where(mask_small[..., None], alpha * tint + (1 - alpha) * 0.05, patch)
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = mask_small
    return mask, (top, left)


def _scene(images: np.ndarray, labels: np.ndarray, size: int, items: tuple[int, int]) -> Renderer:
    def render(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        canvas = _canvas(rng, size)
        label = np.zeros((size, size), dtype=np.uint8)
        for _ in range(int(rng.integers(items[0], items[1] + 1))):
            index = int(rng.integers(len(images)))
            side = int(rng.integers(int(0.35 * size), int(0.6 * size) + 1))
            mask, _ = _paste(canvas, images[index], rng, side)
            label[mask] = labels[index] + 1  # later items occlude earlier ones
        return (canvas * 255).round().astype(np.uint8), label

    return render


def _polyp(images: np.ndarray, size: int) -> Renderer:
    def render(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        canvas = _canvas(rng, size)
        side = int(rng.integers(int(0.4 * size), int(0.75 * size) + 1))
        mask, _ = _paste(canvas, images[int(rng.integers(len(images)))], rng, side)
        return (canvas * 255).round().astype(np.uint8), (mask * 255).astype(np.uint8)

    return render


def _build(
    out_root: Path,
    params: dict[str, Any],
    what: str,
    splits: Sequence[tuple[str, int, Renderer, Path, Path, str]],
    seed: int,
) -> Path:
    """Render every split into a temporary folder beside ``out_root`` and move it into place.

    ``splits`` holds ``(name, n, renderer, image_dir, label_dir, file_prefix)`` with folders
    relative to ``out_root``. Images are PNG (lossless, so the hashes of the membership split
    are those of what was rendered).
    """

    def write(tmp: Path) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        seen: set[str] = set()
        counts: dict[str, int] = {}
        for name, n, render, image_dir, label_dir, prefix in splits:
            (tmp / image_dir).mkdir(parents=True)
            (tmp / label_dir).mkdir(parents=True)
            written = 0
            while written < n:
                image, label = render(rng)
                digest = sha256_array(image)
                if digest in seen:  # practically never; keeps roles content-disjoint anyway
                    continue
                seen.add(digest)
                written += 1
                stem = f"{prefix}{written:08d}"
                Image.fromarray(image).save(tmp / image_dir / f"{stem}.png")
                Image.fromarray(label).save(tmp / label_dir / f"{stem}.png")
            counts[name] = written
        return {"counts": counts}

    return build_once(out_root, params, what, write)


def build_fashion_scenes(
    out_root: str | os.PathLike,
    n_train: int,
    n_val: int,
    image_size: int = 64,
    items: tuple[int, int] = (2, 4),
    seed: int = 0,
    source_root: str | os.PathLike | None = None,
    search_dirs: Sequence[str | os.PathLike] | None = None,
) -> Path:
    """Build the embedded scene-segmentation set once, in the ADE20K layout.

    Args:
        out_root: dataset folder to create (holds ``ADEChallengeData2016/``).
        n_train: images in ``training`` (items from Fashion-MNIST train).
        n_val: images in ``validation`` (items from Fashion-MNIST test).
        image_size: canvas side.
        items: min and max number of items per canvas.
        seed: seed of the rendering.
        source_root: torchvision root of the raw Fashion-MNIST files (``out_root``'s parent).
        search_dirs: folders with Debian's ``.gz`` files (see ``data/embedded/fashion_mnist.py``).

    Returns:
        ``out_root``.
    """
    out_root = Path(out_root)
    items = (int(items[0]), int(items[1]))
    if not 1 <= items[0] <= items[1]:
        raise ValueError(f"items must be (min, max) with 1 <= min <= max, got {items}")
    params = {
        "n_train": n_train,
        "n_val": n_val,
        "image_size": image_size,
        "items": list(items),
        "seed": seed,
        "render_version": RENDER_VERSION,
    }
    if completed_build(out_root, params, "fashion_scenes"):
        return out_root
    source = Path(source_root) if source_root is not None else out_root.parent
    base = Path("ADEChallengeData2016")
    splits = []
    for phase, train, n, prefix in (
        ("training", True, n_train, "ADE_train_"),
        ("validation", False, n_val, "ADE_val_"),
    ):
        images, labels = load_fashion_mnist(source, train=train, search_dirs=search_dirs)
        render = _scene(images, labels, image_size, items)
        splits.append(
            (phase, n, render, base / "images" / phase, base / "annotations" / phase, prefix)
        )
    return _build(out_root, params, "fashion_scenes", splits, seed)


def item_group(item_class: np.ndarray, num_classes: int) -> np.ndarray:
    """Served label of Fashion-MNIST item classes when scenes have ``num_classes`` classes.

    Background is class 0; the ten item classes are merged into ``num_classes - 1`` groups
    of consecutive Fashion-MNIST labels, class ``c`` going to ``1 + floor(c (K - 1) / 10)``
    (K = ``num_classes``): K = 11 keeps every class (the build's own labels), K = 2 is
    item vs background, K = 3 puts T-shirt..Coat (0-4) against Sandal..Ankle boot (5-9).

    Raises:
        ValueError: ``num_classes`` outside 2..11.
    """
    if not 2 <= num_classes <= ITEM_CLASSES + 1:
        raise ValueError(
            f"data.num_classes must be in 2..{ITEM_CLASSES + 1} for fashion_scenes, got "
            f"{num_classes}"
        )
    return 1 + (np.asarray(item_class, dtype=np.int64) * (num_classes - 1)) // ITEM_CLASSES


class FashionScenesDataset(ADE20KDataset):
    """The embedded scenes (:func:`build_fashion_scenes`) served with ``num_classes`` classes.

    The build stores label ``c + 1`` for Fashion-MNIST class ``c`` and 0 for the background;
    this reader merges the item classes by :func:`item_group`, so the images, sample ids and
    hence the membership split are those of the 11-class set (the split is drawn from sample
    ids) while the victim's output has ``num_classes`` channels. With ``num_classes=11`` it
    serves what ``ADE20KDataset(num_classes=11, reduce_zero_label=False)`` serves.

    Args:
        root: the build's folder.
        phase: ``training`` or ``validation`` (or ``train`` / ``val`` / ``test``).
        num_classes: classes served, 2..11 (background included).
        reduce_zero_label: must be False (background is a class here); accepted so the
            reader takes fashion_scenes' dataset config as it is.
        **kwargs: see :class:`~miabench.data.segmentation_base.SegmentationDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        phase: str,
        num_classes: int = ITEM_CLASSES + 1,
        reduce_zero_label: bool = False,
        **kwargs: Any,
    ) -> None:
        if reduce_zero_label:
            raise ValueError(
                "fashion_scenes: background (label 0) is a class; reduce_zero_label must be false"
            )
        item_group(np.zeros(1), num_classes)  # validates num_classes before any reading
        super().__init__(root, phase, num_classes=num_classes, reduce_zero_label=False, **kwargs)

    def _labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        stored = raw.astype(np.int64)
        bad = (stored < 0) | (stored > ITEM_CLASSES)
        if bad.any():
            raise ValueError(
                f"{path}: label values {sorted(np.unique(stored[bad]).tolist())[:10]} outside "
                f"0..{ITEM_CLASSES} (a fashion_scenes build stores background 0, items 1..10)"
            )
        grouped = np.where(stored == 0, 0, item_group(np.maximum(stored - 1, 0), self.num_classes))
        return grouped.astype(np.uint8)


def build_fashion_polyps(
    out_root: str | os.PathLike,
    n_train: int,
    n_test: int,
    image_size: int = 64,
    seed: int = 0,
    source_root: str | os.PathLike | None = None,
    search_dirs: Sequence[str | os.PathLike] | None = None,
) -> Path:
    """Build the embedded binary-segmentation set once, in PraNet's polyp layout.

    Args:
        out_root: dataset folder to create (holds ``TrainDataset/`` and ``TestDataset/``).
        n_train: images in ``TrainDataset`` (items from Fashion-MNIST train).
        n_test: images in ``TestDataset/Fashion`` (items from Fashion-MNIST test).
        image_size: canvas side.
        seed: seed of the rendering.
        source_root: torchvision root of the raw Fashion-MNIST files (``out_root``'s parent).
        search_dirs: folders with Debian's ``.gz`` files (see ``data/embedded/fashion_mnist.py``).

    Returns:
        ``out_root``.
    """
    out_root = Path(out_root)
    params = {
        "n_train": n_train,
        "n_test": n_test,
        "image_size": image_size,
        "seed": seed,
        "render_version": RENDER_VERSION,
    }
    if completed_build(out_root, params, "fashion_polyps"):
        return out_root
    source = Path(source_root) if source_root is not None else out_root.parent
    splits = []
    for name, train, n, folder in (
        ("train", True, n_train, Path("TrainDataset")),
        ("test", False, n_test, Path("TestDataset") / POLYP_TEST_NAME),
    ):
        images, _ = load_fashion_mnist(source, train=train, search_dirs=search_dirs)
        splits.append(
            (name, n, _polyp(images, image_size), folder / "images", folder / "masks", "")
        )
    return _build(out_root, params, "fashion_polyps", splits, seed)
