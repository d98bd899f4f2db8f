"""Membership-split setup with and without the content-hash cache.

Builds an aligned (pix2pix layout) dataset of ``--n`` images, then times
``AlignedDataset.records()`` (what the membership split calls: decode + SHA-256 per image)
three ways, each with a fresh dataset object as a new run would have:
no cache, first run with an empty cache (fills it), second run (all hits).

    OMP_NUM_THREADS=1 nice -n 10 python experiments/bench/content_hash_cache.py --n 50000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from miabench.data.aligned import AlignedDataset
from miabench.utils import hashing


def build(root: Path, n: int, height: int) -> None:
    rng = np.random.default_rng(0)
    folder = root / "train"
    folder.mkdir(parents=True)
    tile = rng.integers(0, 255, (height, 2 * height, 3), dtype=np.uint8)
    old = time.time() - 3600  # older than the cache's racy window
    for i in range(n):
        path = folder / f"{i:06d}.png"
        # cheap distinct images: a shared random tile with the index written into one row
        tile[0, :8] = np.frombuffer(i.to_bytes(24, "little"), dtype=np.uint8).reshape(8, 3)
        Image.fromarray(tile).save(path, compress_level=1)
        os.utime(path, (old, old))


def timed(root: Path) -> tuple[float, list]:
    t0 = time.perf_counter()
    records = AlignedDataset(root, "train").records()
    return time.perf_counter() - t0, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--height", type=int, default=64, help="image is height x 2*height")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        t0 = time.perf_counter()
        build(root, args.n, args.height)
        print(
            f"built {args.n} images of {args.height}x{2 * args.height} in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        os.environ[hashing.HASH_CACHE_ENV] = "off"
        plain, reference = timed(root)
        os.environ[hashing.HASH_CACHE_ENV] = str(Path(tmp) / "hashes.sqlite")
        cold, first = timed(root)
        for cache in hashing._caches.values():
            cache.close()
        hashing._caches.clear()  # a new run opens the cache afresh
        warm, second = timed(root)
        assert reference == first == second, "cached digests differ from computed ones"
        size = (Path(tmp) / "hashes.sqlite").stat().st_size / 1e6
    print("| setup | seconds | ms/image |\n|---|---:|---:|")
    for name, s in (("no cache", plain), ("cache, first run", cold), ("cache, second run", warm)):
        print(f"| {name} | {s:.1f} | {1000 * s / args.n:.3f} |")
    print(f"cache file: {size:.1f} MB; records identical in all three runs")


if __name__ == "__main__":
    main()
