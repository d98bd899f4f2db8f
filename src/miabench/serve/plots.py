"""Figures of an audit report, cheap enough to draw per request.

- :class:`ScoreHistograms`: where a score falls among the calibration half's members and
  non-members. The two histograms depend only on the served model, so they are drawn once
  when the model loads, as inline SVG; a report only adds the image's marker, a line placed
  by arithmetic. Drawing both with matplotlib per request took ~0.5 s of a single worker's
  time on 2 cores and dominated the report page's latency under 8 concurrent clients
  (``results/serve_latency``). Written by hand because no plotting library draws a figure
  once and re-marks it per request; the markup is a few rectangles, lines and labels.
- :func:`tensor_image`: the processed sample as a small PNG ``data:`` URI (Pillow).

Both are embedded in the page, so a report makes no further request (the page's
Content-Security-Policy allows inline SVG and ``data:`` images only). The SVG holds numbers
and fixed labels only, never text from the client.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from html import escape

import numpy as np
import torch
from markupsafe import Markup
from PIL import Image

#: geometry of the figure (SVG user units = CSS pixels)
WIDTH, HEIGHT = 660, 230
PANEL_WIDTH, PANEL_HEIGHT = 270, 140
PANEL_LEFT = (50, 370)  # plot areas' left edges (room for the count axis on their left)
PANEL_TOP = 34
TICKS = 5
#: the score axis' label (the same on both panels)
SCORE_LABEL = "attack score (higher = more member-like)"


def _num(value: float) -> str:
    """A coordinate with three decimals (a thousandth of a pixel is below any display)."""
    return f"{value:.3f}"


@dataclass(frozen=True)
class Panel:
    """One histogram: its label, colour and the counts per shared bin."""

    label: str
    colour: str
    counts: np.ndarray
    left: float

    @property
    def n(self) -> int:
        return int(self.counts.sum())


class ScoreHistograms:
    """The calibration members' and non-members' score histograms on shared bins, as SVG.

    Drawn once per model (:meth:`__init__`); :meth:`render` adds one score's marker to both
    panels. Bin edges span the calibration scores; a score outside them is marked at the
    nearer edge with a note saying it lies beyond the calibration range.

    Args:
        members: calibration members' scores.
        nonmembers: calibration non-members' scores.
        bins: number of shared bins.

    Raises:
        ValueError: when neither group has a finite score.
    """

    def __init__(self, members: np.ndarray, nonmembers: np.ndarray, bins: int = 30) -> None:
        members = np.asarray(members, dtype=np.float64)
        nonmembers = np.asarray(nonmembers, dtype=np.float64)
        members, nonmembers = members[np.isfinite(members)], nonmembers[np.isfinite(nonmembers)]
        values = np.concatenate([members, nonmembers])
        if values.size == 0:
            raise ValueError("no finite calibration score to draw")
        low, high = float(values.min()), float(values.max())
        if high - low <= 1e-12 * max(1.0, abs(low)):  # one value: a unit-wide axis around it
            low, high = low - 0.5, high + 0.5
        self.low, self.high = low, high
        self.edges = np.histogram_bin_edges(values, bins=bins, range=(low, high))
        self.panels = tuple(
            Panel(label, colour, np.histogram(data, bins=self.edges)[0], left)
            for label, colour, data, left in (
                ("calibration members", "#c0392b", members, PANEL_LEFT[0]),
                ("calibration non-members", "#2c7fb8", nonmembers, PANEL_LEFT[1]),
            )
        )
        self._head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="histograms" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="score among calibration members and non-members" '
            f'font-family="sans-serif" font-size="10">'
        )
        self._panels = [self._panel(p) for p in self.panels]

    def x_of(self, panel: Panel, score: float) -> tuple[float, str]:
        """The marker's x in ``panel`` and where the score lies: ``inside``, ``below`` or
        ``above`` the calibration range (then the marker sits on that edge)."""
        fraction = (score - self.low) / (self.high - self.low)
        where = "below" if fraction < 0 else "above" if fraction > 1 else "inside"
        return panel.left + min(max(fraction, 0.0), 1.0) * PANEL_WIDTH, where

    def _panel(self, panel: Panel) -> str:
        """One panel's static markup: bars, axes, ticks, labels (no marker)."""
        left, top, bottom = panel.left, PANEL_TOP, PANEL_TOP + PANEL_HEIGHT
        tallest = max(int(panel.counts.max()), 1)
        parts = [
            f'<g class="panel" data-label="{escape(panel.label)}" data-n="{panel.n}">',
            f'<text class="title" x="{_num(left + PANEL_WIDTH / 2)}" y="{top - 14}" '
            f'text-anchor="middle" font-size="12">{escape(panel.label)} (n={panel.n})</text>',
        ]
        scale = PANEL_WIDTH / (self.high - self.low)
        for count, lo, hi in zip(panel.counts, self.edges[:-1], self.edges[1:], strict=True):
            height = PANEL_HEIGHT * int(count) / tallest
            parts.append(
                f'<rect class="bar" x="{_num(left + (lo - self.low) * scale)}" '
                f'y="{_num(bottom - height)}" width="{_num((hi - lo) * scale)}" '
                f'height="{_num(height)}" fill="{panel.colour}" fill-opacity="0.8" '
                f'data-count="{int(count)}" data-low="{float(lo)!r}" data-high="{float(hi)!r}"/>'
            )
        parts += [
            f'<line x1="{left}" y1="{bottom}" x2="{left + PANEL_WIDTH}" y2="{bottom}" '
            'stroke="#444"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#444"/>',
            f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{tallest}</text>',
            f'<text x="{left - 4}" y="{bottom}" text-anchor="end">0</text>',
            f'<text x="{left - 30}" y="{_num(top + PANEL_HEIGHT / 2)}" text-anchor="middle" '
            f'transform="rotate(-90 {left - 30} {_num(top + PANEL_HEIGHT / 2)})">images</text>',
        ]
        for value in np.linspace(self.low, self.high, TICKS):
            x = _num(left + (value - self.low) * scale)
            parts.append(
                f'<g class="tick" data-value="{float(value)!r}">'
                f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}" stroke="#444"/>'
                f'<text x="{x}" y="{bottom + 15}" text-anchor="middle">{value:.3g}</text></g>'
            )
        parts.append(
            f'<text class="xlabel" x="{_num(left + PANEL_WIDTH / 2)}" y="{bottom + 32}" '
            f'text-anchor="middle">{SCORE_LABEL}</text>'
        )
        return "".join(parts)

    def _marker(self, panel: Panel, score: float) -> str:
        if not math.isfinite(score):
            return (
                f'<text class="marker-note" x="{panel.left + PANEL_WIDTH / 2}" y="{PANEL_TOP + 12}" '
                f'text-anchor="middle">this image: score {score} (not drawn)</text>'
            )
        x, where = self.x_of(panel, score)
        parts = [
            f'<line class="marker" data-score="{score!r}" data-where="{where}" x1="{_num(x)}" '
            f'y1="{PANEL_TOP - 6}" x2="{_num(x)}" y2="{PANEL_TOP + PANEL_HEIGHT}" '
            f'stroke="black" stroke-width="2"><title>this image: {score:.6g}</title></line>'
        ]
        if where != "inside":
            anchor = "start" if where == "below" else "end"
            parts.append(
                f'<text class="marker-note" x="{_num(x)}" y="{PANEL_TOP + 10}" '
                f'text-anchor="{anchor}"> score {score:.3g}: {where} the calibration range </text>'
            )
        return "".join(parts)

    def render(self, score: float) -> Markup:
        """The figure with ``score`` marked on both panels (inline SVG markup)."""
        score = float(score)
        legend = (
            f'<line x1="{WIDTH - 120}" y1="{HEIGHT - 10}" x2="{WIDTH - 100}" y2="{HEIGHT - 10}" '
            f'stroke="black" stroke-width="2"/><text x="{WIDTH - 95}" y="{HEIGHT - 6}">'
            "this image</text>"
        )
        body = "".join(
            f"{static}{self._marker(panel, score)}</g>"
            for static, panel in zip(self._panels, self.panels, strict=True)
        )
        # safe to mark as markup: numbers and this module's fixed labels only
        return Markup(f"{self._head}{body}{legend}</svg>")


def tensor_image(image: torch.Tensor, max_side: int = 128) -> str:
    """A (C, H, W) image in [0, 1] (1 or 3 channels) as a small PNG ``data:`` URI.

    Larger images are shrunk to ``max_side`` (the page shows 128 px); the fastest zlib level
    keeps the encoding well under a millisecond at that size.
    """
    array = (image.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    array = array[0] if array.shape[0] == 1 else np.transpose(array[:3], (1, 2, 0))
    picture = Image.fromarray(array)
    if max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
