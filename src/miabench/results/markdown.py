"""Tables as GitHub Markdown: numbers with their intervals in one cell, counts right-aligned.

Every table writer (generic, privacy–utility, reference, MINT, claims) renders through
:func:`to_markdown`, and cells of a value with its interval through :func:`interval_cell`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

#: cell of a missing value (no run, no published number, or not measured)
MISSING = "—"
#: cell of a metric the test half cannot resolve (a TPR at FPR x with < 10/x non-members)
NOT_OBSERVABLE = "n/o"
#: appended to a difference whose interval excludes 0
SIGNIFICANT = "*"
DECIMALS = 3
#: siblings of a value kept in the CSV only
CSV_ONLY = ("_per_seed", "_p", "_p_adj", "_test")


def _number(value: Any) -> str:
    """Three decimals; a nonzero value that would round to zero (a tiny but systematic paired
    difference) in scientific notation, so a significant difference never reads 0.000."""
    value = float(value)
    if value == 0:
        return f"{0.0:.{DECIMALS}f}"
    if abs(value) < 0.5 * 10**-DECIMALS:
        return f"{value:.1e}"
    return f"{value:.{DECIMALS}f}"


def interval_cell(
    value: Any,
    low: Any = None,
    high: Any = None,
    std: Any = None,
    note: Any = None,
    significant: Any = False,
) -> str:
    """One Markdown cell: ``0.962 [0.931, 0.987]``, ``0.962 ± 0.004 [0.931, 0.987]`` over
    seeds, a trailing ``*`` where a difference is significant, :data:`NOT_OBSERVABLE` where
    a note says why there is no value, :data:`MISSING` where there is nothing."""

    def given(x: Any) -> bool:
        return x is not None and not (isinstance(x, float) and math.isnan(x)) and x is not pd.NA

    if not given(value):
        return NOT_OBSERVABLE if given(note) and str(note) else MISSING
    text = _number(value)
    if given(std):
        text += f" ± {_number(std)}"
    if given(low) and given(high):
        text += f" [{_number(low)}, {_number(high)}]"
    if given(significant) and bool(significant):
        text += SIGNIFICANT
    return text


def markdown_view(frame: pd.DataFrame) -> pd.DataFrame:
    """Every value with ``_lo``/``_hi`` or ``_std`` siblings (:func:`estimate_columns`) as
    one :func:`interval_cell` column; the siblings (and ``_note``, ``_sig``) are dropped, as
    are the CSV-only ``_per_seed``, ``_p``, ``_p_adj`` and ``_test`` (the per-seed table shows
    each seed; the notes say how differences were tested)."""
    out = frame.copy()
    for name in [c for c in frame.columns if f"{c}_lo" in frame or f"{c}_std" in frame]:
        parts = {s: frame.get(f"{name}{s}") for s in ("_std", "_note", "_sig")}
        out[name] = [
            interval_cell(
                frame[name].iloc[i],
                frame[f"{name}_lo"].iloc[i] if f"{name}_lo" in frame else None,
                frame[f"{name}_hi"].iloc[i] if f"{name}_hi" in frame else None,
                None if parts["_std"] is None else parts["_std"].iloc[i],
                None if parts["_note"] is None else parts["_note"].iloc[i],
                False if parts["_sig"] is None else parts["_sig"].iloc[i],
            )
            for i in range(len(frame))
        ]
        dropped = ("_lo", "_hi", *parts, *CSV_ONLY)
        out = out.drop(columns=[f"{name}{s}" for s in dropped if f"{name}{s}" in out])
    return out


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _right_aligned(column: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(column):
        return True
    # interval cells ("0.962 [0.931, 0.987]", "n/o", "—") are numbers too
    cells = [v for v in column if isinstance(v, str)]
    return bool(cells) and len(cells) == len(column) and all(_NUMBER.match(v) for v in cells)


_NUMBER = re.compile(rf"^(-?\d|{MISSING}$|{NOT_OBSERVABLE}$)")


def to_markdown(frame: pd.DataFrame) -> str:
    """GitHub Markdown table: floats to 4 decimals, missing values as "—", numbers right.

    Written here rather than with ``DataFrame.to_markdown`` because that needs the
    ``tabulate`` package, which is not a dependency and is not worth adding for one table.
    """
    numeric = [_right_aligned(frame[c]) for c in frame.columns]
    header = "| " + " | ".join(_cell(str(c)) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if num else "---" for num in numeric) + "|"
    body = [
        "| " + " | ".join(_cell(v) for v in row) + " |"
        for row in frame.astype(object).itertuples(index=False, name=None)
    ]
    return "\n".join([header, rule, *body])
