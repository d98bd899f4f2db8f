"""Embedded data: Fashion-MNIST from Debian's .gz files, and the edges2fashion build."""

from __future__ import annotations

import gzip
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import miabench.data.embedded.fashion_mnist as fm
from miabench.data.aligned import AlignedDataset
from miabench.data.embedded.build import COMPLETE_MARKER
from miabench.data.embedded.fashion_mnist import (
    ENV_DIR,
    build_edges2fashion,
    load_fashion_mnist,
    render_pair,
)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write ``<prefix>-{images-idx3,labels-idx1}-ubyte.gz`` as Debian's package ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">iiii", 0x803, n, h, w) + images.astype(np.uint8).tobytes())
    with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">ii", 0x801, n) + labels.astype(np.uint8).tobytes())


def fake_items(n: int, seed: int) -> np.ndarray:
    """Blob-like 28x28 items (a bright ellipse with texture), so Canny finds edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    items = []
    for _ in range(n):
        cy, cx, ry, rx = (
            rng.uniform(10, 18),
            rng.uniform(10, 18),
            rng.uniform(4, 10),
            rng.uniform(4, 10),
        )
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        items.append(np.where(inside, rng.integers(120, 256, (28, 28)), 0))
    return np.stack(items).astype(np.uint8)


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Tiny Fashion-MNIST in Debian's layout, with duplicates within and across splits."""
    train, test = fake_items(40, seed=0), fake_items(15, seed=1)
    train[30:40] = train[0:10]  # 10 exact copies inside train: 30 distinct items
    test[10:15] = train[0:5]  # 5 test items that are train items: 10 distinct new ones
    gz = tmp_path / "debian"
    write_idx(gz, "train", train, np.arange(40) % 10)
    write_idx(gz, "t10k", test, np.arange(15) % 10)
    monkeypatch.setenv(ENV_DIR, str(gz))
    return {"train": train, "test": test}


def test_load_unpacks_debian_files(
    tmp_path: Path, source: dict[str, np.ndarray], monkeypatch
) -> None:
    root = tmp_path / "tv"
    images, labels = load_fashion_mnist(root, train=False)
    assert images.dtype == np.uint8 and images.shape == (15, 28, 28)
    np.testing.assert_array_equal(images, source["test"])
    np.testing.assert_array_equal(labels, np.arange(15) % 10)
    raw = root / "FashionMNIST" / "raw"
    assert (raw / "train-images-idx3-ubyte").is_file()
    assert not list(raw.glob("*.tmp"))
    # Once unpacked, the source is no longer needed.
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "gone"))
    images, _ = load_fashion_mnist(root, train=True)
    np.testing.assert_array_equal(images, source["train"])


def test_env_dir_without_files_is_an_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=ENV_DIR):
        load_fashion_mnist(tmp_path / "tv", train=True)


def test_search_dirs_are_used_without_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    write_idx(tmp_path / "pkg", "train", fake_items(3, 0), np.zeros(3))
    write_idx(tmp_path / "pkg", "t10k", fake_items(2, 1), np.zeros(2))
    images, _ = load_fashion_mnist(tmp_path / "tv", train=False, search_dirs=[tmp_path / "pkg"])
    assert images.shape == (2, 28, 28)


def test_no_source_and_no_download_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)

    def offline(self) -> None:
        raise RuntimeError("no network")

    monkeypatch.setattr(fm.FashionMNIST, "download", offline)
    with pytest.raises(RuntimeError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "tv", train=True, search_dirs=[tmp_path / "none"])


def test_build_edges2fashion_layout_and_duplicates(tmp_path: Path, source, caplog) -> None:
    out = tmp_path / "data" / "edges2fashion"
    # All distinct items of each split: only possible when duplicates are skipped.
    assert build_edges2fashion(out, n_train=30, n_test=10, image_size=32, seed=0) == out
    marker = json.loads((out / COMPLETE_MARKER).read_text())
    assert marker["counts"] == {"train": 30, "test": 10}
    assert sum(marker["skipped_duplicates"].values()) >= 1
    assert (tmp_path / "data" / "FashionMNIST" / "raw").is_dir()  # source_root default
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]

    hashes = {}
    for phase, count in (("train", 30), ("test", 10)):
        records = AlignedDataset(out, phase).records()
        assert len(records) == count
        hashes[phase] = {r.sha256 for r in records}
        assert len(hashes[phase]) == count
    assert not hashes["train"] & hashes["test"]

    # Files are named by their Fashion-MNIST index and hold edges | item.
    name = sorted((out / "test").iterdir())[0].name
    index = int(name.split(".")[0])
    assert re.fullmatch(r"\d{6}\.png", name) and index < 10
    pixels = np.asarray(Image.open(out / "test" / name))
    np.testing.assert_array_equal(pixels, render_pair(source["test"][index], 32))
    a = pixels[:, :32, 0]
    assert set(np.unique(a)) <= {0, 255} and (a == 255).mean() > 0.5  # black edges on white
    assert (a == 0).any()

    item = AlignedDataset(out, "train")[0]
    assert item["input"].shape == (3, 32, 32)


def test_build_is_reused_and_other_params_refused(tmp_path: Path, source, monkeypatch) -> None:
    out = tmp_path / "e2f"
    build_edges2fashion(out, n_train=5, n_test=3, image_size=32, seed=1)
    before = sorted(p.name for p in (out / "train").iterdir())

    def no_rebuild(*args, **kwargs):
        raise AssertionError("rebuilt a finished dataset")

    monkeypatch.setattr(fm, "load_fashion_mnist", no_rebuild)
    assert build_edges2fashion(out, n_train=5, n_test=3, image_size=32, seed=1) == out
    assert sorted(p.name for p in (out / "train").iterdir()) == before
    with pytest.raises(ValueError, match=re.escape(str(out))):
        build_edges2fashion(out, n_train=5, n_test=3, image_size=32, seed=2)


def test_build_refuses_foreign_folder_and_too_many_items(tmp_path: Path, source) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=re.escape(str(foreign))):
        build_edges2fashion(foreign, n_train=2, n_test=2, image_size=32)
    with pytest.raises(ValueError, match="only 30 distinct"):
        build_edges2fashion(tmp_path / "big", n_train=31, n_test=1, image_size=32)
    assert not (tmp_path / "big").exists()


def test_build_is_deterministic(tmp_path: Path, source) -> None:
    names = []
    for folder in ("one", "two"):
        out = build_edges2fashion(tmp_path / folder, n_train=8, n_test=4, image_size=32, seed=3)
        names.append(sorted(p.name for p in (out / "train").iterdir()))
    assert names[0] == names[1]


@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_debian_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    images, labels = load_fashion_mnist(tmp_path, train=False)
    assert images.shape == (10000, 28, 28) and set(np.unique(labels)) == set(range(10))
