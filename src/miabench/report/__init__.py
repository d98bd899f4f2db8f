"""Self-contained HTML audit reports (templates + plots, no network).

``build_report(attack_dir, out)`` (one attack folder) and ``build_table_report(table, out)``
(a table) are what the CLI (``python -m miabench.report``) and the web app call. They are
imported on first use, so importing this package (as ``python -m miabench.report --help``
does) loads neither matplotlib nor pandas.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportError", "build_report", "build_table_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from miabench.report.build import build_report

        return build_report
    if name == "build_table_report":
        from miabench.report.table import build_table_report

        return build_table_report
    if name == "ReportError":
        from miabench.report.records import ReportError

        return ReportError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
