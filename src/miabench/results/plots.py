"""ROC plots of a run's attacks, linear and log-log (the low-FPR view of Carlini et al.)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from miabench.metrics.roc import ArrayLike, roc_curve, roc_metrics
from miabench.utils.io import atomic_write

#: The log-log plot always reaches this FPR, the lowest one the results report.
LOWEST_REPORTED_FPR = 1e-3


def _figure() -> Figure:
    # A bare Figure on an Agg canvas: no pyplot state, so no GUI backend and no figures
    # leaking between calls or threads.
    fig = Figure(figsize=(5, 5), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    # The temporary file ends in ".tmp", so the format must be given explicitly.
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=150))


def plot_roc(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    out_dir: str | os.PathLike,
    title: str,
) -> list[Path]:
    """Write ``roc_linear.png`` and ``roc_loglog.png`` with one ROC curve per attack.

    Args:
        curves: attack name -> ``(scores, labels)`` of the rows to plot (the test split);
            higher score = member, label 1 = member.
        out_dir: folder of the two PNGs (created if needed).
        title: figure title, e.g. the victim and dataset.

    Returns:
        Paths of the linear and the log-log plot. The log-log plot starts at the smaller of
        1e-3 (so the reported TPR@0.1%FPR point is always visible) and 1 / (largest number
        of non-members), the lowest FPR the data can resolve.
    """
    if not curves:
        raise ValueError("plot_roc needs at least one (scores, labels) curve")
    out_dir = Path(out_dir)
    linear, loglog = _figure(), _figure()
    ax_lin, ax_log = linear.add_subplot(), loglog.add_subplot()
    n_neg = 1
    for name, (scores, labels) in curves.items():
        fpr, tpr, _ = roc_curve(scores, labels)
        y = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
        n_neg = max(n_neg, int((y == 0).sum()))
        label = f"{name} (AUC {roc_metrics(scores, labels, fprs=())['auc']:.4f})"
        ax_lin.plot(fpr, tpr, label=label)
        ax_log.plot(fpr, tpr, label=label)
    low = min(LOWEST_REPORTED_FPR, 1.0 / n_neg)

    ax_lin.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax_lin.set(xlim=(0, 1), ylim=(0, 1))
    # Zero FPR/TPR points are clipped to the axis edge rather than dropped, so a curve
    # that starts with true positives at zero FPR still shows its left end.
    ax_log.set_xscale("log", nonpositive="clip")
    ax_log.set_yscale("log", nonpositive="clip")
    diag = np.array([low, 1.0])
    ax_log.plot(diag, diag, "k--", lw=0.8, label="chance")
    ax_log.set(xlim=(low, 1), ylim=(low, 1))

    paths = []
    for fig, ax, file in ((linear, ax_lin, "roc_linear.png"), (loglog, ax_log, "roc_loglog.png")):
        ax.set(xlabel="False positive rate", ylabel="True positive rate", title=title)
        ax.legend(loc="lower right", fontsize="small")
        ax.grid(True, which="major", alpha=0.3)
        paths.append(_save(fig, out_dir / file))
    return paths
