"""Embedded data: Fashion-MNIST, and an edges→item dataset built from it (``edges2fashion``).

Fashion-MNIST is read with torchvision. Offline machines get it from Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/*.gz``), which is
unpacked into the folder layout torchvision expects, so no download is needed.
``build_edges2fashion`` turns items into pix2pix aligned pairs (edge map | item), a small
stand-in for edges2shoes that trains on a CPU in minutes.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from skimage import feature
from torchvision.datasets import FashionMNIST

from miabench.data.embedded.build import build_once
from miabench.utils.hashing import sha256_array
from miabench.utils.io import atomic_write

log = logging.getLogger(__name__)

#: Environment variable naming the one folder to take the ``.gz`` files from.
ENV_DIR = "MIABENCH_FASHION_MNIST_DIR"
#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
DEFAULT_SEARCH_DIRS: tuple[str, ...] = ("/usr/share/datasets/fashion-mnist",)
RAW_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
#: Bumped when the rendering changes, so an old folder is not mistaken for a new build.
RENDER_VERSION = 1


def _raw_folder(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def _has_raw(root: Path) -> bool:
    return all((_raw_folder(root) / name).is_file() for name in RAW_FILES)


def _find_gz_dir(search_dirs: Sequence[str | os.PathLike] | None) -> Path | None:
    """First folder holding all four ``.gz`` files; the env var replaces the search path."""
    env = os.environ.get(ENV_DIR)
    if env:
        folder = Path(env)
        missing = [f"{n}.gz" for n in RAW_FILES if not (folder / f"{n}.gz").is_file()]
        if missing:
            # An explicit choice that does not work is an error, not a reason to download.
            raise FileNotFoundError(f"{ENV_DIR}={folder} lacks {missing}")
        return folder
    for folder in map(Path, DEFAULT_SEARCH_DIRS if search_dirs is None else search_dirs):
        if all((folder / f"{n}.gz").is_file() for n in RAW_FILES):
            return folder
    return None


def _gunzip(source: Path, dest: Path) -> None:
    def write(tmp: Path) -> None:
        with gzip.open(source, "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst)

    try:
        atomic_write(dest, write)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{source}: cannot decompress ({err})") from err


def ensure_fashion_mnist(
    root: str | os.PathLike, search_dirs: Sequence[str | os.PathLike] | None = None
) -> Path:
    """Make the raw Fashion-MNIST files available under ``root/FashionMNIST/raw``.

    Looks, in order, at: files already there; the ``.gz`` files in ``$MIABENCH_FASHION_MNIST_DIR``
    (when set, the only folder searched) or else in ``search_dirs`` (Debian's package folder by
    default); torchvision's download.

    Args:
        root: torchvision dataset root.
        search_dirs: folders to look for the ``.gz`` files in.

    Returns:
        The raw folder.

    Raises:
        RuntimeError: no source worked; says how to install the data.
    """
    root = Path(root)
    raw = _raw_folder(root)
    if _has_raw(root):
        return raw
    gz_dir = _find_gz_dir(search_dirs)
    if gz_dir is not None:
        log.info("unpacking Fashion-MNIST from %s into %s", gz_dir, raw)
        for name in RAW_FILES:
            _gunzip(gz_dir / f"{name}.gz", raw / name)
        return raw
    try:
        FashionMNIST(str(root), train=True, download=True)
    except Exception as err:  # any download failure (network, checksum) gets the same advice
        searched = [str(p) for p in (DEFAULT_SEARCH_DIRS if search_dirs is None else search_dirs)]
        raise RuntimeError(
            f"Fashion-MNIST not found in {raw} nor in {searched}, and downloading failed "
            f"({type(err).__name__}: {err}). Install it with "
            f"`apt-get install dataset-fashion-mnist`, or set {ENV_DIR} to a folder holding "
            f"{[f'{n}.gz' for n in RAW_FILES]}."
        ) from err
    return raw


def load_fashion_mnist(
    root: str | os.PathLike,
    train: bool,
    search_dirs: Sequence[str | os.PathLike] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images and labels, unpacking or downloading them first if needed.

    Args:
        root: torchvision dataset root (files end up in ``root/FashionMNIST/raw``).
        train: the 60k training split if True, else the 10k test split.
        search_dirs: folders with Debian's ``.gz`` files (see :func:`ensure_fashion_mnist`).

    Returns:
        ``(images, labels)``: uint8 ``[N, 28, 28]`` and int64 ``[N]``.
    """
    raw = ensure_fashion_mnist(root, search_dirs)
    try:
        dataset = FashionMNIST(str(root), train=train, download=False)
    except (RuntimeError, ValueError, AssertionError, OSError) as err:
        raise ValueError(f"{raw}: cannot read Fashion-MNIST ({err})") from err
    return dataset.data.numpy(), dataset.targets.numpy()


def render_pair(item: np.ndarray, image_size: int) -> np.ndarray:
    """An aligned A|B pair (uint8 RGB ``[S, 2S, 3]``) for one 28x28 item.

    B is the item upsampled (bicubic); A its Canny edges, black on white like edges2shoes.
    The smoothing scale follows the image size so the strokes look alike at every size.
    """
    b = np.asarray(Image.fromarray(item).resize((image_size, image_size), Image.BICUBIC))
    edges = feature.canny(b.astype(np.float64) / 255.0, sigma=1.5 * image_size / 64)
    a = np.where(edges, 0, 255).astype(np.uint8)
    pair = np.concatenate([a, b], axis=1)
    return np.repeat(pair[:, :, None], 3, axis=2)


def pair_from_photo(photo: np.ndarray, image_size: int) -> np.ndarray:
    """The aligned A|B pair the builder writes for a photo (RGB uint8 ``[H, W, 3]``).

    The inverse direction of the dataset: an item's photo (B, grey) alone gives the pair
    :func:`render_pair` writes (its Canny edges as A), so the audit server can take the
    photo where the dataset's input is derived from it. A photo at the dataset's size gives
    back the dataset's file exactly (bicubic resize to the same size is the identity).
    """
    grey = np.asarray(Image.fromarray(np.ascontiguousarray(photo)).convert("L"))
    return render_pair(grey, image_size)


def _pick_unique(
    images: np.ndarray,
    n: int,
    rng: np.random.Generator,
    image_size: int,
    seen: set[str],
    split: str,
) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Walk a seeded permutation, keeping the first ``n`` pairs of unseen content."""
    picked: list[tuple[int, np.ndarray]] = []
    skipped = 0
    for index in rng.permutation(len(images)):
        if len(picked) == n:
            break
        pair = render_pair(images[index], image_size)
        # Hashing the rendered pair (what the membership split will hash) also catches
        # near-duplicates that become equal after resizing.
        digest = sha256_array(pair)
        if digest in seen:
            skipped += 1
            continue
        seen.add(digest)
        picked.append((int(index), pair))
    if len(picked) < n:
        raise ValueError(
            f"asked for {n} {split} items, but Fashion-MNIST {split} has only {len(picked)} "
            f"distinct ones ({skipped} duplicates skipped)"
        )
    return picked, skipped


def build_edges2fashion(
    out_root: str | os.PathLike,
    n_train: int,
    n_test: int,
    image_size: int = 64,
    seed: int = 0,
    source_root: str | os.PathLike | None = None,
    search_dirs: Sequence[str | os.PathLike] | None = None,
) -> Path:
    """Build the edges2fashion dataset once, in the pix2pix aligned layout.

    Writes ``out_root/train/<index>.png`` and ``out_root/test/<index>.png``, where ``index``
    is the item's index in its Fashion-MNIST split, each file the edge map (A) beside the
    item (B). Items are taken from a seeded permutation; items whose rendered pair equals
    one already written (Fashion-MNIST has exact duplicates, also across train and test) are
    skipped and counted. The folder is built beside ``out_root`` and moved into place, so
    it is either complete or absent.

    Args:
        out_root: dataset folder to create.
        n_train: number of training pairs.
        n_test: number of test pairs.
        image_size: side of A and B.
        seed: seed of the item choice.
        source_root: torchvision root for the raw Fashion-MNIST files; defaults to
            ``out_root``'s parent.
        search_dirs: folders with Debian's ``.gz`` files (see :func:`ensure_fashion_mnist`).

    Returns:
        ``out_root``.

    Raises:
        ValueError: ``out_root`` holds a build with other parameters.
        FileExistsError: ``out_root`` holds something else.
    """
    out_root = Path(out_root)
    params = {
        "n_train": n_train,
        "n_test": n_test,
        "image_size": image_size,
        "seed": seed,
        "render_version": RENDER_VERSION,
    }
    source = Path(source_root) if source_root is not None else out_root.parent

    def write(tmp: Path) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        seen: set[str] = set()
        splits: dict[str, tuple[list[tuple[int, np.ndarray]], int]] = {}
        for split, train, n in (("train", True, n_train), ("test", False, n_test)):
            images, _ = load_fashion_mnist(source, train=train, search_dirs=search_dirs)
            splits[split] = _pick_unique(images, n, rng, image_size, seen, split)
        skipped = {split: s for split, (_, s) in splits.items()}
        log.info("edges2fashion: skipped duplicate items %s", skipped)
        for split, (picked, _) in splits.items():
            (tmp / split).mkdir()
            for index, pair in picked:
                Image.fromarray(pair).save(tmp / split / f"{index:06d}.png")
        counts = {split: len(picked) for split, (picked, _) in splits.items()}
        return {"counts": counts, "skipped_duplicates": skipped}

    return build_once(out_root, params, "edges2fashion", write)
