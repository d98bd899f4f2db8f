"""The Fashion-MNIST identity PROXY, on tiny Fashion-MNIST files written in the idx layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from miabench.data.embedded import proxy_faces
from miabench.data.embedded.proxy_faces import FashionIdentities


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Fashion-MNIST's idx files (big-endian magic 2051 / 2049 and sizes, then uint8)."""
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, h, w) + images.tobytes()
    )
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + labels.tobytes()
    )


def test_proxy_identities_are_class_pure_clusters(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    # two visually distinct kinds per class, so clustering has something to find
    labels = np.repeat(np.arange(10, dtype=np.uint8), 30)
    kind = np.tile(np.arange(2), 150)
    base = np.zeros((300, 28, 28))
    base[kind == 0, :14] = 200
    base[kind == 1, 14:] = 200
    images = np.clip(base + rng.normal(0, 10, base.shape) + labels[:, None, None], 0, 255).astype(
        np.uint8
    )
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw, "train", images[:240], labels[:240])
    write_idx(raw, "t10k", images[240:], labels[240:])

    kwargs = {
        "root": tmp_path,
        "images_per_identity": 15,
        "n_member_identities": 8,
        "n_nonmember_identities": 8,
    }
    members = FashionIdentities(phase="members", **kwargs)
    nonmembers = FashionIdentities(phase="nonmembers", **kwargs)
    _, classes, identity = proxy_faces.fashion_identities(str(tmp_path), 15, 0)
    assert len(np.unique(identity)) == 20  # 30 images per class / 15
    assert (identity // 10_000 == classes).all()  # identities never mix classes
    assert members.num_classes == 8
    m_ids = {s.split("/")[0] for s, *_ in members._entries}
    n_ids = {s.split("/")[0] for s, *_ in nonmembers._entries}
    assert not m_ids & n_ids
    # stratified by class: both sides hold identities of the same classes, as many of each
    assert sorted(i.split("_")[0] for i in m_ids) == sorted(i.split("_")[0] for i in n_ids)
    item = members[0]
    index = int(item["sample_id"].split("/")[1])
    assert item["input"].shape == (1, 32, 32)
    np.testing.assert_allclose(item["input"][0, 2:30, 2:30].numpy() * 255, images[index], atol=1e-3)
    assert float(item["input"][0, :2].abs().sum()) == 0  # zero padding
    assert "fashion-mnist:" in members.records()[0].path

    # the cached assignment is a readable .npy, reused by a fresh process
    cache = next(tmp_path.glob("proxy_identities-*.npy"))
    assert (np.load(cache) == identity).all()
    proxy_faces.fashion_identities.cache_clear()
    assert (proxy_faces.fashion_identities(str(tmp_path), 15, 0)[2] == identity).all()
