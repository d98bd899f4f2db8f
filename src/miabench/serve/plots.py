"""Figures of an audit report: where a score falls among the calibration half's scores, and
the processed sample as the victim saw it (both as ``data:`` URIs, so a report page makes no
further request)."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image


def _png_uri(buffer: io.BytesIO) -> str:
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def score_histograms(
    members: np.ndarray, nonmembers: np.ndarray, score: float, bins: int = 30
) -> str:
    """Two histograms (calibration members, non-members) on shared bins, the score marked.

    A ``Figure`` without pyplot: no global state, so report threads can draw side by side.
    """
    values = np.concatenate([members, nonmembers, [score]])
    values = values[np.isfinite(values)]
    edges = np.histogram_bin_edges(values, bins=bins)
    figure = Figure(figsize=(6.4, 2.4), dpi=80)
    panels = figure.subplots(1, 2, sharex=True)
    for axis, data, label, colour in (
        (panels[0], members, "calibration members", "#c0392b"),
        (panels[1], nonmembers, "calibration non-members", "#2c7fb8"),
    ):
        axis.hist(data, bins=edges, color=colour, alpha=0.8)
        axis.axvline(score, color="black", linewidth=2, label="this image")
        axis.set_title(f"{label} (n={len(data)})", fontsize=9)
        axis.set_xlabel("attack score (higher = more member-like)", fontsize=8)
        axis.tick_params(labelsize=7)
    panels[0].legend(fontsize=7, loc="upper left")
    # fixed margins: tight_layout measures every text extent, the slowest step of the figure
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.2, top=0.88, wspace=0.25)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return _png_uri(buffer)


def tensor_image(image: torch.Tensor) -> str:
    """A (C, H, W) image in [0, 1] (1 or 3 channels) as a PNG data URI."""
    array = (image.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    array = array[0] if array.shape[0] == 1 else np.transpose(array[:3], (1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return _png_uri(buffer)
