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


def resolvable(
    fpr: np.ndarray, tpr: np.ndarray, n_nonmembers: int
) -> tuple[np.ndarray, np.ndarray]:
    """The part of an ROC curve a test with ``n_nonmembers`` can resolve: FPR ≥ 1 / n.

    One false positive is already an FPR of 1 / n, so below it the empirical curve is a flat
    line at the TPR of zero false positives, which a log axis would draw over decades that the
    test says nothing about.
    """
    fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
    keep = fpr >= 1.0 / max(int(n_nonmembers), 1)
    return fpr[keep], tpr[keep]


def roc_figures(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]], title: str
) -> tuple[Figure, Figure]:
    """The linear and the log-log ROC figure of ``curves`` (see :func:`plot_roc`)."""
    if not curves:
        raise ValueError("plot_roc needs at least one (scores, labels) curve")
    linear, loglog = _figure(), _figure()
    ax_lin, ax_log = linear.add_subplot(), loglog.add_subplot()
    cuts = set()
    for name, (scores, labels) in curves.items():
        fpr, tpr, _ = roc_curve(scores, labels)
        y = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
        n_neg = max(1, int((y == 0).sum()))
        label = f"{name} (AUC {roc_metrics(scores, labels, fprs=())['auc']:.4f})"
        ax_lin.plot(fpr, tpr, label=label)
        ax_log.plot(*resolvable(fpr, tpr, n_neg), label=label)
        cuts.add(n_neg)
    low = min(LOWEST_REPORTED_FPR, 1.0 / max(cuts))

    ax_lin.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax_lin.set(xlim=(0, 1), ylim=(0, 1))
    # Zero TPR points are clipped to the axis edge rather than dropped, so a curve that
    # starts with no true positives still shows its left end.
    ax_log.set_xscale("log", nonpositive="clip")
    ax_log.set_yscale("log", nonpositive="clip")
    diag = np.array([low, 1.0])
    ax_log.plot(diag, diag, "k--", lw=0.8, label="chance")
    for n_neg in sorted(cuts):
        # the curves stop here: the lowest FPR the test resolves (one false positive)
        ax_log.axvline(
            1.0 / n_neg, color="grey", ls=":", lw=1.0, label=f"FPR = 1/{n_neg} (resolution)"
        )
    ax_log.set(xlim=(low, 1), ylim=(low, 1))
    for ax in (ax_lin, ax_log):
        ax.set(xlabel="False positive rate", ylabel="True positive rate", title=title)
        ax.legend(loc="lower right", fontsize="small")
        ax.grid(True, which="major", alpha=0.3)
    return linear, loglog


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
        Paths of the linear and the log-log plot. The log-log plot cuts each curve at
        FPR = 1 / (its number of non-members), the lowest FPR the test resolves, and marks
        the cut with a dotted vertical line; its axis starts at the smaller of that and 1e-3
        (so the reported TPR@0.1%FPR point is always on the axis).
    """
    linear, loglog = roc_figures(curves, title)
    out_dir = Path(out_dir)
    return [_save(linear, out_dir / "roc_linear.png"), _save(loglog, out_dir / "roc_loglog.png")]
