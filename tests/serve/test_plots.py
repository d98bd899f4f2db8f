"""The report's histograms: drawn once per model as SVG, the image's score marked where it
belongs (read back from the SVG's own geometry: ticks, bars and the marker line)."""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from miabench.serve.plots import ScoreHistograms, tensor_image

SVG = "{http://www.w3.org/2000/svg}"


def _panels(svg: str) -> list[ET.Element]:
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg"
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"]


def _axis(panel: ET.Element) -> tuple[float, float]:
    """The panel's score axis as (score at x = 0, scores per unit x), from its first and
    last tick (their positions and values)."""
    ticks = [g for g in panel.iter(f"{SVG}g") if g.get("class") == "tick"]
    (x0, v0), (x1, v1) = (
        (float(t.find(f"{SVG}line").get("x1")), float(t.get("data-value")))
        for t in (ticks[0], ticks[-1])
    )
    slope = (v1 - v0) / (x1 - x0)
    return v0 - slope * x0, slope


@pytest.fixture(scope="module")
def histograms() -> ScoreHistograms:
    rng = np.random.default_rng(0)
    return ScoreHistograms(rng.normal(1.0, 0.3, 64), rng.normal(0.0, 0.3, 200), bins=20)


def test_both_histograms_labelled_with_their_counts(histograms: ScoreHistograms) -> None:
    members, nonmembers = _panels(histograms.render(0.5))
    for panel, label, n in ((members, "members", 64), (nonmembers, "non-members", 200)):
        title = next(t for t in panel.iter(f"{SVG}text") if t.get("class") == "title").text
        assert title == f"calibration {label} (n={n})"
        bars = [r for r in panel.iter(f"{SVG}rect") if r.get("class") == "bar"]
        assert len(bars) == 20
        assert sum(int(b.get("data-count")) for b in bars) == n
        # bar heights are proportional to the counts
        tallest = max(bars, key=lambda b: int(b.get("data-count")))
        for bar in bars:
            ratio = int(bar.get("data-count")) / int(tallest.get("data-count"))
            assert float(bar.get("height")) == pytest.approx(
                ratio * float(tallest.get("height")), abs=2e-3
            )
        labels = [t.text for t in panel.iter(f"{SVG}text") if t.get("class") == "xlabel"]
        assert labels == ["attack score (higher = more member-like)"]
    # members (mean 1) sit right of non-members (mean 0) on the shared axis
    centre = {}
    for name, panel in (("m", members), ("n", nonmembers)):
        bars = [r for r in panel.iter(f"{SVG}rect") if r.get("class") == "bar"]
        offset, slope = _axis(panel)
        x = np.array([float(b.get("x")) + float(b.get("width")) / 2 for b in bars])
        counts = np.array([int(b.get("data-count")) for b in bars])
        centre[name] = offset + slope * float(np.average(x, weights=counts))
    assert centre["m"] == pytest.approx(1.0, abs=0.1)
    assert centre["n"] == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize("score", [0.0, 0.37, 1.21])
def test_marker_at_the_score(histograms: ScoreHistograms, score: float) -> None:
    for panel in _panels(histograms.render(score)):
        (marker,) = [line for line in panel.iter(f"{SVG}line") if line.get("class") == "marker"]
        x = float(marker.get("x1"))
        assert float(marker.get("x2")) == x
        offset, slope = _axis(panel)
        assert offset + slope * x == pytest.approx(score, abs=abs(slope) * 2e-3)
        assert marker.get("data-where") == "inside"
        # the bar under the marker is the bin holding the score
        (bar,) = [
            r
            for r in panel.iter(f"{SVG}rect")
            if float(r.get("x")) <= x < float(r.get("x")) + float(r.get("width"))
        ]
        assert float(bar.get("data-low")) <= score < float(bar.get("data-high"))


def test_score_beyond_the_calibration_range_is_marked_at_the_edge_and_said(
    histograms: ScoreHistograms,
) -> None:
    high = _panels(histograms.render(50.0))[0]
    low = _panels(histograms.render(-50.0))[0]
    bars = [r for r in high.iter(f"{SVG}rect") if r.get("class") == "bar"]
    right = float(bars[-1].get("x")) + float(bars[-1].get("width"))
    left = float(bars[0].get("x"))
    for panel, edge, where in ((high, right, "above"), (low, left, "below")):
        marker = next(line for line in panel.iter(f"{SVG}line") if line.get("class") == "marker")
        assert float(marker.get("x1")) == pytest.approx(edge, abs=2e-3)
        assert marker.get("data-where") == where
        note = next(t for t in panel.iter(f"{SVG}text") if t.get("class") == "marker-note")
        assert f"{where} the calibration range" in note.text


def _decoded(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_thumbnail_is_a_small_png() -> None:
    large = _decoded(tensor_image(torch.rand(3, 256, 512)))
    assert large.format == "PNG" and large.size == (128, 64)  # shrunk, aspect kept
    small = torch.rand(1, 32, 32)
    pixels = np.asarray(_decoded(tensor_image(small)))
    assert pixels.shape == (32, 32)  # small images as they are, exactly
    assert np.array_equal(pixels, (small[0].numpy() * 255).round().astype(np.uint8))
