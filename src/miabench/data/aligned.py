"""The pix2pix *aligned* layout: ``root/{train,val,test}/<name>.<ext>``, each file A|B.

Every image file holds the A image (left half) and the B image (right half) side by side,
as in the datasets published with pix2pix (facades, maps, cityscapes, edges2shoes, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

from miabench.data.base import MembershipDataset
from miabench.data.membership import SampleRecord
from miabench.utils.hashing import cached_digest, settings_salt, sha256_array

#: ``AtoB`` / ``BtoA`` translate one half into the other (pix2pix's ``--direction``);
#: ``AtoA`` / ``BtoB`` serve one half as both input and target: the identity task of an
#: autoencoder, the reconstruction that CycleGAN's cycle loss asks for and that Shafran et
#: al. (ICCV 2021) show resists reconstruction-based attacks (nothing to guess: no uncertainty).
DIRECTIONS = ("AtoB", "BtoA", "AtoA", "BtoB")
#: (input half, target half) of each direction: 0 = A (left), 1 = B (right).
_HALVES = {"AtoB": (0, 1), "BtoA": (1, 0), "AtoA": (0, 0), "BtoB": (1, 1)}
DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


#: How palette (``P``, ``PA``) and alpha (``RGBA``, ``LA``) images become 3 channels:
#: ``rgb`` expands the palette to its colours and drops alpha (what pix2pix's loader,
#: ``Image.open(path).convert("RGB")``, gives the victim); ``grayscale`` takes their
#: ITU-R 601-2 luma repeated on 3 channels, as the authors' attack transform does for such
#: images (torchvision ``Grayscale(3)``).
PALETTE_RGBA_MODES = ("rgb", "grayscale")

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_PALETTE_OR_ALPHA = ("P", "PA", "RGBA", "RGBa", "LA", "La")


def check_file_name(path: Path) -> Path:
    """Refuse a file whose name is not valid UTF-8 (it could not be written to a manifest).

    Raises:
        ValueError: naming the file (with the undecodable bytes escaped).
    """
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path.name)
        raise ValueError(
            f"{os.fsencode(path)!r}: file name {raw!r} is not valid UTF-8; rename it "
            "(e.g. `convmv -f latin1 -t utf8 --notest <file>`)"
        ) from None
    return path


def read_text_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file (annotations, pair lists, record indexes).

    Raises:
        ValueError: naming the file and the byte offset where it is not valid UTF-8.
    """
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.object[err.start : err.end]!r})"
        ) from None


def listed_image(path: Path, extensions: Sequence[str]) -> bool:
    """True for an image file of a listing; a broken link or link loop with an image
    extension is an error, not silently skipped.

    Raises:
        ValueError: naming a non-UTF-8 name, a broken symbolic link or a link loop.
    """
    if path.name.startswith(".") or path.suffix.lower() not in extensions:
        return False
    check_file_name(path)
    if not path.is_file():
        if path.is_symlink():
            raise ValueError(f"{path}: broken symbolic link or symbolic link loop")
        return False
    return True


def to_rgb(image: Image.Image, where: str, palette_rgba: str = "rgb") -> np.ndarray:
    """An opened image as RGB uint8 (H, W, 3), by the documented conversions.

    * RGB as stored; grey (``L``, ``1``) repeated on 3 channels.
    * 16-bit grey (``I;16``, PNG's 16-bit depth): scaled to 8 bits, ``round(v / 257)``
      (PIL's own ``convert`` would clip everything above 255 to white), then repeated.
      16-bit colour PNGs are already read by PIL as 8-bit RGB.
    * palette and alpha images: see :data:`PALETTE_RGBA_MODES`.
    * CMYK, YCbCr, LAB, HSV: PIL's conversion to RGB (CMYK without its ICC profile).
    * floating-point images (``F``): refused, their value range is not defined.

    EXIF orientation is not applied: pixels are used in stored order, as PIL-based loaders
    (pix2pix, PraNet, the authors' code) read them, and as their masks are stored.

    Raises:
        ValueError: naming ``where``, for a floating-point or out-of-range image or an
            unknown ``palette_rgba``.
    """
    if palette_rgba not in PALETTE_RGBA_MODES:
        raise ValueError(f"palette_rgba must be one of {PALETTE_RGBA_MODES}, got {palette_rgba!r}")
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode in _SIXTEEN_BIT:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{where}: {mode} image has values outside 0..65535")
        grey = np.round(values / 257.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        raise ValueError(f"{where}: floating-point image (mode F); save it as 8- or 16-bit")
    if mode in _PALETTE_OR_ALPHA and palette_rgba == "grayscale":
        return np.repeat(np.asarray(image.convert("L"))[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def read_rgb(path: Path, palette_rgba: str = "rgb") -> np.ndarray:
    """Decode an image file to an RGB uint8 array (H, W, 3) by :func:`to_rgb`'s conversions.

    Raises:
        ValueError: naming the file when it cannot be decoded (truncated, corrupt, not an
            image, a decompression bomb) or has no defined conversion.
    """
    try:
        with Image.open(path) as image:
            # load() forces the full decode, so a truncated file fails here, not later.
            image.load()
            return to_rgb(image, str(path), palette_rgba)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: unreadable or corrupt image ({err})") from err


class AlignedDataset(MembershipDataset):
    """Paired images in the pix2pix aligned layout.

    Items are dicts ``{"sample_id": "<phase>/<filename>", "input": FloatTensor[3, H, W],
    "target": FloatTensor[3, H, W]}`` with values in [0, 1].

    Preprocessing follows pix2pix's ``resize_and_crop``: with ``augment`` both halves are
    resized to ``load_size`` (square), then the same random ``crop_size`` crop and the same
    random horizontal flip are applied to both. Without ``augment`` both halves are resized
    to ``crop_size`` (or ``load_size`` when only that is set; native size when neither is).

    Args:
        root: dataset folder holding ``train/``, ``val/``, ``test/``.
        phase: which subfolder to read.
        direction: ``AtoB`` (input = left half, target = right half), ``BtoA`` (the
            reverse), or the identity tasks ``AtoA`` / ``BtoB`` (input = target = that half;
            see :data:`DIRECTIONS`).
        load_size: side the halves are resized to before the random crop.
        crop_size: side of the random crop (augment) or of the resize (no augment).
        augment: random crop and flip, for training.
        extensions: file name endings (case-insensitive) taken as images.
        palette_rgba: how palette and RGBA files become RGB (:data:`PALETTE_RGBA_MODES`):
            ``rgb`` (default) as pix2pix trains on them, ``grayscale`` as the authors'
            attack transform sees them. The paper's datasets (facades, maps, cityscapes:
            RGB JPEGs) hold no such files, so both reproduce the paper there.
    """

    entries_attr = "_files"

    def __init__(
        self,
        root: str | os.PathLike,
        phase: str,
        direction: str = "AtoB",
        load_size: int | None = None,
        crop_size: int | None = None,
        augment: bool = False,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        palette_rgba: str = "rgb",
    ) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.root = Path(root)
        self.phase = phase
        self.direction = direction
        self.load_size = load_size
        self.crop_size = crop_size
        self.augment = augment
        self.extensions = tuple(e.lower() for e in extensions)
        if palette_rgba not in PALETTE_RGBA_MODES:
            raise ValueError(
                f"palette_rgba must be one of {PALETTE_RGBA_MODES}, got {palette_rgba!r}"
            )
        self.palette_rgba = palette_rgba
        self.folder = self.root / phase
        self._files = self._list_files()
        self._records: list[SampleRecord] | None = None

    def _list_files(self) -> list[Path]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} does not exist")
        if not self.folder.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise FileNotFoundError(
                f"phase folder {self.folder} does not exist; folders in {self.root}: {present}"
            )
        files = sorted(p for p in self.folder.iterdir() if listed_image(p, self.extensions))
        if not files:
            raise FileNotFoundError(
                f"{self.folder} holds no images with extensions {list(self.extensions)}"
            )
        return files

    def sample_id(self, path: Path) -> str:
        """Id of the file at ``path``: ``<phase>/<filename>``."""
        return f"{self.phase}/{path.name}"

    def __len__(self) -> int:
        return len(self._files)

    def _read_pair(self, path: Path) -> np.ndarray:
        pixels = read_rgb(path, self.palette_rgba)
        width = pixels.shape[1]
        if width % 2:
            raise ValueError(
                f"{path}: width {width} is odd; an aligned image holds A and B side by side"
            )
        return pixels

    def _sizes(self) -> tuple[int | None, int | None]:
        """(resize side, crop side) for this dataset's mode."""
        if self.augment:
            return self.load_size, self.crop_size
        return self.crop_size or self.load_size, None

    def _transform(self, pair: torch.Tensor, path: Path) -> torch.Tensor:
        """Resize, crop and flip A and B together: ``pair`` is (2, 3, H, W) uint8."""
        resize, crop = self._sizes()
        if resize is not None:
            # Bicubic on uint8 rounds and clamps, so values stay in [0, 255].
            pair = F.resize(pair, [resize, resize], InterpolationMode.BICUBIC, antialias=True)
        if crop is not None:
            height, width = pair.shape[-2:]
            if crop > height or crop > width:
                raise ValueError(
                    f"{path}: crop_size {crop} exceeds the resized image ({height}x{width}); "
                    "set load_size >= crop_size"
                )
            top = int(torch.randint(0, height - crop + 1, ()).item())
            left = int(torch.randint(0, width - crop + 1, ()).item())
            pair = F.crop(pair, top, left, crop, crop)
        if self.augment and torch.rand(()).item() < 0.5:
            pair = F.horizontal_flip(pair)
        return pair

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self._files[index]
        return self.item_from_pixels(self._read_pair(path), self.sample_id(path), path)

    def item_from_pixels(
        self, pixels: np.ndarray, sample_id: str, where: Path | str = "<pixels>"
    ) -> dict[str, Any]:
        """The item the victim sees for one decoded A|B file (RGB uint8 ``[H, 2W, 3]``).

        The one transform of this dataset, shared by :meth:`__getitem__` and callers that
        hold pixels rather than a file of the dataset (the audit server's uploads).

        Raises:
            ValueError: naming ``where``, when the width is odd (no A|B halves).
        """
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[1] % 2:
            raise ValueError(
                f"{where}: an aligned image holds A and B side by side (RGB, even width); "
                f"got shape {tuple(pixels.shape)}"
            )
        half = pixels.shape[1] // 2
        a, b = pixels[:, :half], pixels[:, half:]
        pair = torch.from_numpy(np.stack([a, b])).permute(0, 3, 1, 2).contiguous()
        pair = F.to_dtype(self._transform(pair, Path(where)), torch.float32, scale=True)
        first, second = _HALVES[self.direction]
        # clone: an identity task's input and target must not share storage
        return {
            "sample_id": sample_id,
            "input": pair[first],
            "target": pair[second].clone() if first == second else pair[second],
        }

    def content_sha256(self, pixels: np.ndarray) -> str:
        """The manifest's content hash of a decoded A|B file (see :meth:`records`)."""
        return sha256_array(pixels)

    def records(self) -> list[SampleRecord]:
        """One record per file; ``sha256`` hashes the decoded RGB pixels of the whole file.

        Decoding every file is slow on large datasets, so the list is computed once per
        dataset (and shared with its subsets).
        """
        if self._records is None:
            salt = settings_salt(self)
            self._records = [
                SampleRecord(
                    self.sample_id(p),
                    str(p),
                    cached_digest(p, lambda p=p: sha256_array(self._read_pair(p)), salt),
                )
                for p in self._files
            ]
        return list(self._records)

    def entry_id(self, entry: Path) -> str:
        return self.sample_id(entry)

    def searched(self) -> str:
        return str(self.folder)

    def repr_fields(self) -> list[str]:
        return [
            repr(str(self.folder)),
            f"n={len(self)}",
            f"direction={self.direction}",
            f"load_size={self.load_size}",
            f"crop_size={self.crop_size}",
            f"augment={self.augment}",
        ]
