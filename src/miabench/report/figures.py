"""The report's figures: ROC curves with pointwise interval bands, drawn as inline SVG.

Every figure is a bare matplotlib ``Figure`` on an Agg canvas (no pyplot state, as in
:mod:`miabench.results.plots`) saved as SVG text with no date, no metadata block and text
kept as text, so a report is deterministic, small and makes no network request.

**Band.** Pointwise exact (Clopper–Pearson) interval of the TPR at each reachable FPR
``k / n`` (``n`` test non-members, threshold at the ``k``-th highest non-member score):
:func:`miabench.metrics.roc.reached_operating_point`'s rule at every ``k``, the same interval that
results.json records for the reached operating points. It is conditional on the
non-members (it covers the true TPR of the threshold the test chose) and pointwise, not a
simultaneous band over the whole curve.

**Log-log cut.** A TPR at FPR ``x`` needs ``MIN_NONMEMBERS_PER_FPR / x`` non-members
(:func:`miabench.metrics.roc.observable`, the 10/x rule), so the log-log curve and its band
stop at ``x = MIN_NONMEMBERS_PER_FPR / n``; the recorded operating points below it are
drawn as hollow markers with their intervals.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from miabench.metrics.intervals import clopper_pearson_interval
from miabench.metrics.roc import MIN_NONMEMBERS_PER_FPR, roc_curve, tpr_at_fpr

#: how the band is computed, said in the report beside every ROC figure
BAND_METHOD = (
    "pointwise 95 % Clopper–Pearson interval of the TPR at each reachable FPR k/n "
    "(conditional on the test non-members: it covers the true TPR of the threshold the "
    "test chose, not the uncertainty of that threshold's FPR; not a simultaneous band)"
)
#: at most this many thresholds k get a band point (log- and linearly spaced), so a test of
#: thousands of non-members does not compute thousands of beta quantiles per figure
MAX_BAND_POINTS = 160

#: axis labels as percentages: 0.001 -> "0.1 %"
_PERCENT = FuncFormatter(lambda value, _: f"{100 * value:g} %")
_METADATA_BLOCK = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


@dataclass
class Curve:
    """One attack's test-half ROC with its band, as drawn.

    Attributes:
        name: the attack.
        fpr, tpr: every point of the empirical ROC (:func:`miabench.metrics.roc.roc_curve`).
        band_fpr, band_low, band_high: the band at the reachable FPRs ``k / n``.
        n_members, n_nonmembers: the test counts.
        points: the recorded operating points ``(fpr, tpr, low, high, label)``.
    """

    name: str
    fpr: np.ndarray
    tpr: np.ndarray
    band_fpr: np.ndarray
    band_low: np.ndarray
    band_high: np.ndarray
    n_members: int
    n_nonmembers: int
    points: list[tuple[float, float, float, float, str]] = field(default_factory=list)

    @property
    def resolvable_fpr(self) -> float:
        """The lowest FPR the test resolves by the 10/x rule: ``10 / n_nonmembers``."""
        return MIN_NONMEMBERS_PER_FPR / max(self.n_nonmembers, 1)


def _band_ks(n_nonmembers: int) -> np.ndarray:
    """The thresholds ``k`` (false positives) the band is computed at."""
    if n_nonmembers + 1 <= MAX_BAND_POINTS:
        return np.arange(n_nonmembers + 1)
    half = MAX_BAND_POINTS // 2
    log_spaced = np.geomspace(1, n_nonmembers, half)
    lin_spaced = np.linspace(0, n_nonmembers, half)
    return np.unique(np.rint(np.r_[0, log_spaced, lin_spaced]).astype(int))


def roc_with_band(
    name: str,
    scores: np.ndarray,
    labels: np.ndarray,
    recorded: Mapping[str, object] | None = None,
    level: float = 0.95,
) -> Curve:
    """An attack's ROC, its Clopper–Pearson band and the operating points results.json
    records for it (``tpr_at_<x>pct_fpr_reached`` with its interval).

    Args:
        name: the attack.
        scores: test-half scores, higher = more likely a member.
        labels: 1 for members, 0 for non-members.
        recorded: the attack's entry of results.json (``None``: no recorded points).
        level: coverage of the band.
    """
    fpr, tpr, _ = roc_curve(scores, labels)
    y = np.asarray(labels).astype(int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    # what reached_operating_point records at one FPR, here at every band point k / n
    band_fpr = _band_ks(n_neg) / n_neg
    hits = np.asarray([tpr_at_fpr(fpr, tpr, x) for x in band_fpr]) * n_pos
    bounds = np.array([clopper_pearson_interval(h, n_pos, level) for h in hits])
    curve = Curve(name, fpr, tpr, band_fpr, bounds[:, 0], bounds[:, 1], n_pos, n_neg)
    for key, value in (recorded or {}).items():
        match = re.fullmatch(r"(tpr_at_(.+)pct_fpr)_reached", key)
        if not match or value is None:
            continue
        ci = recorded.get(f"{key}_ci{level * 100:g}") or (np.nan, np.nan)
        at = recorded.get(f"{key}_fpr")
        if at is not None:
            label = f"reached point for {match.group(2)} % FPR"
            curve.points.append((float(at), float(value), float(ci[0]), float(ci[1]), label))
    return curve


def _figure(size: tuple[float, float] = (4.2, 4.0)) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element: no XML prolog, date or metadata block."""
    buffer = io.StringIO()
    # a fixed hash salt makes the SVG's element ids, hence its text, the same on every build
    with rc_context({"svg.hashsalt": "miabench-report", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    return _METADATA_BLOCK.sub("", text)


def _styles(curves: Sequence[Curve]) -> list[tuple[str, str | None, float]]:
    """(colour, legend label, band opacity) per curve: one colour and one legend entry per
    attack name, so the seeds of one attack (a table's setting) share them."""
    cycle = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
    names = list(dict.fromkeys(c.name for c in curves))
    counts = {n: sum(c.name == n for c in curves) for n in names}
    out, seen = [], set()
    for curve in curves:
        colour = cycle[names.index(curve.name) % len(cycle)]
        label = None if curve.name in seen else curve.name
        seen.add(curve.name)
        # overlapping bands of several seeds would turn opaque
        out.append((colour, label, max(0.05, 0.18 / counts[curve.name])))
    return out


def roc_linear_figure(curves: Sequence[Curve], title: str) -> Figure:
    """Linear ROC of ``curves`` with their bands and the chance diagonal."""
    fig = _figure()
    ax = fig.add_subplot()
    for curve, (colour, label, alpha) in zip(curves, _styles(curves), strict=True):
        ax.fill_between(
            curve.band_fpr, curve.band_low, curve.band_high, color=colour, alpha=alpha, lw=0
        )
        ax.plot(curve.fpr, curve.tpr, color=colour, lw=1.2, label=label)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="False positive rate", ylabel="True positive rate")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(_PERCENT)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(True, alpha=0.3)
    return fig


def loglog_xs(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``curve`` the log-log figure draws: FPR ≥ :attr:`Curve.resolvable_fpr`."""
    keep = curve.fpr >= curve.resolvable_fpr - 1e-12
    return curve.fpr[keep], curve.tpr[keep]


def roc_loglog_figure(curves: Sequence[Curve], title: str) -> Figure:
    """Log-log ROC cut at each curve's resolvable FPR (10/x rule), with bands, the cut
    marked, and the recorded operating points (hollow when below the cut)."""
    fig = _figure()
    ax = fig.add_subplot()
    cut = min(c.resolvable_fpr for c in curves)
    points = [p[0] for c in curves for p in c.points if p[0] > 0]
    low = min([cut, *points, 1e-3]) / 1.5
    for curve, (colour, label, alpha) in zip(curves, _styles(curves), strict=True):
        keep = curve.band_fpr >= curve.resolvable_fpr - 1e-12
        ax.fill_between(
            curve.band_fpr[keep],
            curve.band_low[keep],
            curve.band_high[keep],
            color=colour,
            alpha=alpha,
            lw=0,
        )
        ax.plot(*loglog_xs(curve), color=colour, lw=1.2, label=label)
        for at, tpr, lo, hi, _ in curve.points:
            if at <= 0 or not np.isfinite(lo):
                continue  # FPR 0 has no place on a log axis; the table below gives it
            below = at < curve.resolvable_fpr - 1e-12
            ax.errorbar(
                [at],
                [max(tpr, low)],
                yerr=[[max(tpr - lo, 0)], [max(hi - tpr, 0)]],
                fmt="o",
                mfc="white" if below else colour,
                mec=colour,
                ecolor=colour,
                ms=4,
                capsize=2,
                lw=0.8,
            )
    for n_neg in sorted({c.n_nonmembers for c in curves}):
        ax.axvline(
            MIN_NONMEMBERS_PER_FPR / n_neg,
            color="grey",
            ls=":",
            lw=1.0,
            label=f"FPR = {MIN_NONMEMBERS_PER_FPR}/{n_neg} (resolution)",
        )
    ax.set_xscale("log", nonpositive="clip")
    ax.set_yscale("log", nonpositive="clip")
    ax.plot([low, 1], [low, 1], "k--", lw=0.8, label="chance")
    ax.set(xlim=(low, 1), ylim=(low, 1.05))
    ax.set(xlabel="False positive rate", ylabel="True positive rate")
    # percent labels read better than 10^-2 to a lay reader, and skip mathtext parsing (most
    # of the drawing time); minor ticks add dozens of tick lines to the SVG for little
    ax.minorticks_off()
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(_PERCENT)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    return fig
