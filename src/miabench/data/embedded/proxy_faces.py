"""PROXY for face identities built from Fashion-MNIST (no identity-labelled face set offline).

This is not face data. Fashion-MNIST has 10 classes, far too few to stand in for identities:
a member/non-member split by class would let an auditor learn the class, not membership.
Each class is therefore clustered (k-means on pixels, seeded) into visually coherent groups
of about ``images_per_identity`` images, and each group is a proxy "identity"
(``c<class>_<cluster>``), which gives about 70 000 / ``images_per_identity`` identities drawn
drawn onto the member and non-member sides stratified by class (``stratum_pattern``,
:func:`~miabench.data.faces.partition_identities`): both sides get the same number of
identities of every class, paired by image count, so they share the same class mix. A plain
random draw leaves the mix unequal, and an auditor then learns "this class means member" from
its calibration identities, which flips on its test identities (scores below chance).
Images are 28x28 grayscale, zero-padded to 32x32 (IResNet needs a multiple of 16).
"""

from __future__ import annotations

import io
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sklearn.cluster import MiniBatchKMeans

from miabench.data.embedded.build import build_once
from miabench.data.embedded.fashion_mnist import load_fashion_mnist
from miabench.data.faces import IdentityDataset
from miabench.utils.io import atomic_write

#: bump when the identity construction changes (the cache file name carries it).
PROXY_VERSION = 1


@lru_cache(maxsize=2)
def fashion_identities(
    root: str, images_per_identity: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All 70 000 Fashion-MNIST images (train then test), their class and proxy identity.

    The identity assignment is cached in ``root`` (``.npy``, written atomically) since the
    clustering takes a few seconds; it is deterministic in (images_per_identity, seed).

    Returns:
        ``(images uint8 [N, 28, 28], classes int64 [N], identity int64 [N])`` where identity
        ``= class * 10_000 + cluster``.
    """
    train_x, train_y = load_fashion_mnist(root, train=True)
    test_x, test_y = load_fashion_mnist(root, train=False)
    images = np.concatenate([train_x, test_x])
    classes = np.concatenate([train_y, test_y]).astype(np.int64)
    cache = Path(root) / f"proxy_identities-v{PROXY_VERSION}-{images_per_identity}-{seed}.npy"
    if cache.is_file():
        identity = np.load(cache)
        if identity.shape == classes.shape:
            return images, classes, identity
    identity = np.zeros_like(classes)
    for c in np.unique(classes):
        rows = np.flatnonzero(classes == c)
        k = max(1, len(rows) // images_per_identity)
        kmeans = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=2048)
        clusters = kmeans.fit_predict(images[rows].reshape(len(rows), -1).astype(np.float32))
        identity[rows] = c * 10_000 + clusters

    def save(tmp: Path) -> None:
        # through a handle: np.save given a path without ".npy" appends it
        with tmp.open("wb") as handle:
            np.save(handle, identity, allow_pickle=False)

    atomic_write(cache, save)
    return images, classes, identity


class FashionIdentities(IdentityDataset):
    """PROXY face dataset: Fashion-MNIST clustered into pseudo-identities (see module doc).

    ``sample_id`` is ``c<class>_<cluster>/<index>`` with ``index`` in Fashion-MNIST's train
    split (0..59 999) followed by its test split (60 000..69 999).

    Args:
        root: torchvision-style Fashion-MNIST root (see :mod:`miabench.data.embedded.fashion_mnist`).
        images_per_identity: target cluster size (a proxy identity's image count).
        cluster_seed: seed of the clustering.
        **kwargs: see :class:`~miabench.data.faces.IdentityDataset` (image_size defaults to 32,
            channels to 1, stratum_pattern to the class).
    """

    name = "fashion_identities (PROXY)"
    #: the class part of a proxy identity's name (``c<class>``): the partition's stratum
    CLASS_PATTERN = r"^c\d+"

    def __init__(
        self,
        root: str | os.PathLike,
        images_per_identity: int = 50,
        cluster_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.root = str(root)
        self.images_per_identity = images_per_identity
        self.cluster_seed = cluster_seed
        kwargs.setdefault("image_size", 32)
        kwargs.setdefault("channels", 1)
        kwargs.setdefault("stratum_pattern", self.CLASS_PATTERN)
        super().__init__(**kwargs)

    def _data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return fashion_identities(self.root, self.images_per_identity, self.cluster_seed)

    def _index(self) -> list[tuple[str, str, Any]]:
        _, _, identity = self._data()
        names = [f"c{i // 10_000}_{i % 10_000:04d}" for i in identity.tolist()]
        return [(f"{name}/{index:05d}", name, index) for index, name in enumerate(names)]

    def _read(self, key: Any) -> np.ndarray:
        images = self._data()[0]
        # zero-pad 28 → 32: IResNet's four stride-2 stages need a multiple of 16, and padding
        # keeps the pixels exact (no resampling).
        return np.pad(images[key], 2)[:, :, None]

    def _where(self, key: Any) -> str:
        split, index = ("train", key) if key < 60_000 else ("test", key - 60_000)
        return f"fashion-mnist:{split}[{index}]"


#: bump when the shifted rendering changes (the build's marker carries it)
SHIFT_VERSION = 1


def shift_image(image: np.ndarray, downscale: float, jpeg_quality: int | None) -> np.ndarray:
    """A proxy image as another "camera" would give it: lower resolution, lossy compression.

    ``image`` (uint8 [H, W]) is resized to ``downscale`` of its side and back (bilinear), then,
    with ``jpeg_quality``, JPEG-encoded and decoded at that quality. This mimics what tells
    external face sets (IJB-C, FDDB, Adience: lower-resolution, differently compressed photos)
    apart from Glint360k's crops, without touching who is depicted.
    """
    side = image.shape[0]
    small = max(1, round(side * downscale))
    out = (
        Image.fromarray(image)
        .resize((small, small), Image.BILINEAR)
        .resize((side, side), Image.BILINEAR)
    )
    if jpeg_quality is not None:
        buffer = io.BytesIO()
        out.save(buffer, format="JPEG", quality=int(jpeg_quality))
        buffer.seek(0)
        out = Image.open(buffer).convert("L")
    return np.asarray(out, dtype=np.uint8)


def build_shifted_nonmembers(
    root: str | os.PathLike,
    out_root: str | os.PathLike,
    images_per_identity: int,
    cluster_seed: int,
    n_member_identities: int,
    n_nonmember_identities: int,
    identity_seed: int,
    stratum_pattern: str | None = FashionIdentities.CLASS_PATTERN,
    downscale: float = 0.75,
    jpeg_quality: int | None = 75,
) -> Path:
    """Write the proxy's non-member identities, domain-shifted, as an external face set.

    The CPU stand-in for MINT's published protocol (non-members from *other datasets*): the
    same unseen identities the identity-disjoint control uses as non-members, each image
    passed through :func:`shift_image`, written to ``out_root/<identity>/<index>.png``
    (32x32, zero-padded like the proxy's own images) and read back through
    ``data.nonmembers`` (``layout: folder``) like any external set. Only the rendering
    differs from the control, so what an auditor gains over the control here is the
    dataset shift. Built once (a marker file names the settings); returns ``out_root``.
    """
    out = Path(out_root)
    params = {
        "version": SHIFT_VERSION,
        "images_per_identity": images_per_identity,
        "cluster_seed": cluster_seed,
        "n_member_identities": n_member_identities,
        "n_nonmember_identities": n_nonmember_identities,
        "identity_seed": identity_seed,
        "stratum_pattern": stratum_pattern,
        "downscale": downscale,
        "jpeg_quality": jpeg_quality,
    }

    def write(tmp: Path) -> dict[str, Any]:
        source = FashionIdentities(
            root=root,
            images_per_identity=images_per_identity,
            cluster_seed=cluster_seed,
            phase="nonmembers",
            n_member_identities=n_member_identities,
            n_nonmember_identities=n_nonmember_identities,
            identity_seed=identity_seed,
            stratum_pattern=stratum_pattern,
        )
        images = source._data()[0]
        for sample_id, identity, key in source._entries:
            folder = tmp / identity
            folder.mkdir(exist_ok=True)
            shifted = np.pad(shift_image(images[key], downscale, jpeg_quality), 2)
            Image.fromarray(shifted).save(folder / f"{sample_id.split('/')[1]}.png")
        return {"n": len(source)}

    return build_once(out, params, "shifted proxy non-members", write)
