"""The privacy–utility plot: utility (x) against every attack's AUC (y), one marker per
defense and attack."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from miabench.utils.io import atomic_write

#: metrics where a lower value is better utility (the plot says which way is better)
LOWER_IS_BETTER = {"l1", "loss"}


def plot_privacy_utility(
    frame: pd.DataFrame, path: str | os.PathLike, utility_column: str, title: str
) -> Path:
    """Utility (x) vs attack AUC (y): one marker per defense and attack, AUC 0.5 marked,
    written as a PNG at ``path``."""
    fig = privacy_utility_figure(frame, utility_column, title)
    return atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=150))


def privacy_utility_figure(frame: pd.DataFrame, utility_column: str, title: str) -> Figure:
    """The figure of :func:`plot_privacy_utility` (the HTML report draws it as SVG)."""
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot state, no GUI backend
    ax = fig.add_subplot()
    # the attacks' own AUCs: not paired differences, nor the reference runs' columns (their
    # victims are trained at another recipe, so the table's utility is not theirs)
    auc_columns = [
        c
        for c in frame.columns
        if c.endswith("_auc")
        and "_vs_" not in c
        and not c.startswith(("best_reference_", "reference_free_"))
    ]
    markers = "osD^v<>"
    for i, column in enumerate(auc_columns):
        y = frame[column].astype(float)
        # the pooled bootstrap interval of the AUC, where the table has one
        low = frame.get(f"{column}_lo", pd.Series(np.nan, index=frame.index)).astype(float)
        high = frame.get(f"{column}_hi", pd.Series(np.nan, index=frame.index)).astype(float)
        yerr = np.vstack([(y - low).fillna(0).clip(lower=0), (high - y).fillna(0).clip(lower=0)])
        ax.errorbar(
            frame[utility_column].astype(float),
            y,
            yerr=yerr,
            fmt=markers[i % len(markers)],
            capsize=2,
            label=column.removesuffix("_auc"),
        )
    for _, row in frame.iterrows():
        y = max(row[c] for c in auc_columns if pd.notna(row[c])) if auc_columns else 0.5
        label = row["defense"]
        if pd.notna(row.get("epsilon")):
            label += f" (ε={row['epsilon']:.3g})"
        ax.annotate(
            label, (row[utility_column], y), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    metric = utility_column.split("_", 1)[-1]
    better = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
    ax.set_xlabel(f"utility: {utility_column} ({better})")
    ax.set_ylabel("attack ROC AUC (lower = more private)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig
