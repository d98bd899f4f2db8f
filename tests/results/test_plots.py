"""ROC plots are written as non-empty PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from miabench.results.plots import plot_roc

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_roc_writes_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    curves = {
        "reconstruction": (rng.random(200) + labels, labels),
        "membership_error": (torch.rand(200) + torch.from_numpy(labels), torch.from_numpy(labels)),
    }
    paths = plot_roc(curves, tmp_path / "plots", title="pix2pix on facades")
    assert [p.name for p in paths] == ["roc_linear.png", "roc_loglog.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "roc_linear.png",
        "roc_loglog.png",
    ]  # no temporary files left behind
