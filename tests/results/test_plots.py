"""ROC plots are written as non-empty PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from miabench.metrics.roc import roc_curve
from miabench.results.plots import plot_roc, roc_figures

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


def test_loglog_curves_stop_at_the_resolvable_fpr_and_mark_it() -> None:
    # 50 non-members: one false positive is FPR 0.02; the strong attack has TPR > 0 at FPR 0
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(300, dtype=int), np.zeros(50, dtype=int)]
    scores = rng.normal(size=350) + 3.0 * labels
    weak_labels = np.r_[np.ones(100, dtype=int), np.zeros(400, dtype=int)]
    weak = rng.normal(size=500) + 0.5 * weak_labels
    _, loglog = roc_figures({"strong": (scores, labels), "weak": (weak, weak_labels)}, "t")
    (ax,) = loglog.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    strong = next(v for k, v in lines.items() if k.startswith("strong"))
    weak_line = next(v for k, v in lines.items() if k.startswith("weak"))
    assert np.min(strong.get_xdata()) >= 1 / 50 and np.min(weak_line.get_xdata()) >= 1 / 400
    # the unresolved start of the strong curve (zero false positives) is really there
    fpr, tpr, _ = roc_curve(scores, labels)
    assert tpr[fpr == 0].max() > 0 and len(strong.get_xdata()) < len(fpr)
    # each cut is marked by a dotted vertical line at 1/n
    cut = lines["FPR = 1/50 (resolution)"]
    assert cut.get_linestyle() == ":" and list(cut.get_xdata()) == [1 / 50, 1 / 50]
    assert "FPR = 1/400 (resolution)" in lines
