"""Shared fixtures: tiny datasets in the published layouts and composed configs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_cfg(
    config_name: str,
    overrides: Sequence[str] = (),
    *,
    root_dir: Path | None = None,
    hydra: bool = False,
) -> DictConfig:
    """Compose the package's entry config ``config_name`` as its Hydra app would.

    The one way tests build a config (no test re-implements composing).

    Args:
        config_name: an entry config of ``CONF_DIR`` (``run_attack``, ``make_table``, ...).
        overrides: Hydra overrides, applied in order.
        root_dir: when given, ``paths.root_dir`` (every output and cache under it), so a
            test writes only inside its own temporary folder.
        hydra: also return the ``hydra`` node (to check the run dir and launchers).
    """
    overrides = list(overrides)
    if root_dir is not None:
        overrides.append(f"paths.root_dir={root_dir}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=hydra)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def write_aligned(root: Path, phase: str, n: int, size: int = 32, seed: int = 0) -> list[Path]:
    """Write ``n`` A|B images of ``size``x``size`` halves in the pix2pix aligned layout.

    A is a random smooth image and B a fixed non-linear function of it plus per-image
    texture, so a generator can learn the mapping but also memorise each target.
    """
    rng = np.random.default_rng(seed)
    folder = root / phase
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        coarse = rng.random((size // 8, size // 8, 3))
        a = np.kron(coarse, np.ones((8, 8, 1)))
        b = np.clip(1.0 - a + 0.5 * rng.random((size, size, 3)) - 0.25, 0, 1)
        pair = np.concatenate([a, b], axis=1)
        path = folder / f"{i:04d}.png"
        Image.fromarray((pair * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def aligned_root(tmp_path: Path) -> Path:
    """A tiny dataset in the pix2pix aligned layout: 48 train, 8 test pairs of 32x32."""
    root = tmp_path / "tiny_aligned"
    write_aligned(root, "train", 48, seed=0)
    write_aligned(root, "test", 8, seed=1)
    return root


@pytest.fixture(scope="module")
def fashion_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Fashion-MNIST in Debian's layout (the embedded builds' source), for the data
    and defense contract tests."""
    from tests.data.test_fashion_mnist import fake_items, write_idx

    gz = tmp_path_factory.mktemp("fashion_mnist")
    write_idx(gz, "train", fake_items(30, seed=0), np.arange(30) % 10)
    write_idx(gz, "t10k", fake_items(10, seed=1), np.arange(10) % 10)
    return gz
