"""The HTML report of a table (:func:`build_table_report`): its rows with intervals, the
paired tests of each defense, the privacy–utility plot, every setting's ROC curves over its
seeds, and a plain-language summary, all from the table's CSV and its run records.

The table must have been written by ``python -m miabench.make_table table=<name>`` (its
``<out_dir>/<name>.csv`` and ``.md``); the runs are the records its ``results`` globs match.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from miabench.report import summary
from miabench.report.build import REPORT, _curves, _figures, _write
from miabench.report.figures import BAND_METHOD, to_svg
from miabench.report.records import ReportError, read_attack_folder
from miabench.results.runs import collect_results, group_seeds

#: the defense the paired tests compare with (``<metric>_vs_none`` columns)
REFERENCE = "none"


def _table_config(table: str | Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A table config by name (composed from the package's configs) or as given."""
    if isinstance(table, str):
        from hydra import compose, initialize_config_module

        with initialize_config_module("miabench.conf", version_base="1.3"):
            table = compose("make_table", overrides=[f"table={table}", *overrides]).table
    if isinstance(table, DictConfig):
        table = OmegaConf.to_container(table, resolve=True)
    return dict(table)


def markdown_table(path: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """The first Markdown table of ``path`` (header, rows) and its ``- `` notes."""
    header: list[str] = []
    rows: list[list[str]] = []
    notes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not header:
                header = cells
            elif not all(set(c) <= set("-:") for c in cells):
                rows.append(cells)
        elif line.startswith("- "):
            notes.append(line[2:])
    return header, rows, notes


def _value(row: Mapping[str, Any], column: str) -> float | None:
    value = row.get(column)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _attacks(frame: pd.DataFrame) -> list[str]:
    """The attacks with an own AUC column (not differences or reference-run columns)."""
    return [
        c.removesuffix("_auc")
        for c in frame.columns
        if c.endswith("_auc")
        and "_vs_" not in c
        and not c.startswith(("best_reference_", "reference_free_", "best_vs_"))
    ]


def row_summaries(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per table row: its strongest attack by mean AUC with the interval the table gives,
    and that attack's paired difference from the undefended row where tested."""
    attacks = _attacks(frame)
    out = []
    for _, row in frame.iterrows():
        aucs = {a: _value(row, f"{a}_auc") for a in attacks}
        aucs = {a: v for a, v in aucs.items() if v is not None}
        if not aucs:
            continue
        best = max(aucs, key=aucs.get)
        diff = f"{best}_auc_vs_{REFERENCE}"
        label = row.get("defense", row.get("victim", ""))
        out.append(
            {
                "label": str(label),
                "attack": best,
                "auc": aucs[best],
                "low": _value(row, f"{best}_auc_lo"),
                "high": _value(row, f"{best}_auc_hi"),
                "n_seeds": row.get("n_seeds"),
                "diff": _value(row, diff),
                "diff_low": _value(row, f"{diff}_lo"),
                "diff_high": _value(row, f"{diff}_hi"),
                "p_adj": _value(row, f"{diff}_p_adj"),
                "significant": str(row.get(f"{diff}_sig", "")).strip() in ("*", "True", "true"),
            }
        )
    return out


def paired_tests(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Every tested difference of the table (columns with an adjusted p-value)."""
    tests = []
    label_column = "defense" if "defense" in frame else frame.columns[0]
    for column in [c for c in frame.columns if c.endswith("_p_adj")]:
        base = column.removesuffix("_p_adj")
        for _, row in frame.iterrows():
            if _value(row, column) is None:
                continue
            tests.append(
                {
                    "row": str(row[label_column]),
                    "metric": base,
                    "value": _value(row, base),
                    "low": _value(row, f"{base}_lo"),
                    "high": _value(row, f"{base}_hi"),
                    "p": _value(row, f"{base}_p"),
                    "p_adj": _value(row, column),
                    "test": str(row.get(f"{base}_test", "")),
                    "significant": str(row.get(f"{base}_sig", "")).strip() in ("*", "True"),
                }
            )
    return tests


def _settings(paths: list[Path]) -> list[dict[str, Any]]:
    """Each setting's seeds: ROC figures over the seeds and one line per seed."""
    groups, _ = group_seeds(collect_results(paths))
    settings = []
    for runs in groups:
        records = [read_attack_folder(Path(r["_path"]).parent) for r in runs]
        first = records[0].run
        label = " / ".join(str(first.get(k)) for k in ("victim", "dataset", "defense"))
        curves = [c for rec in records for c in _curves(rec).values()]
        seeds = [
            {
                "seed": rec.run.get("seed"),
                "folder": rec.folder.name,
                "attacks": {
                    name: {
                        "auc": info["auc"],
                        "auc_ci": info.get(
                            summary.ci_key("auc", float(info.get("ci_level") or 0.95))
                        ),
                        "point": summary.operating_point(info, summary.headline_fpr(info))
                        if summary.headline_fpr(info) is not None
                        else None,
                    }
                    for name, info in rec.attacks.items()
                },
            }
            for rec in records
        ]
        settings.append(
            {
                "label": label,
                "figures": _figures(curves, label) if curves else None,
                "seeds": seeds,
                "n_nonmembers": records[0].attacks[next(iter(records[0].attacks))][
                    "n_test_nonmembers"
                ],
                "limits": summary.limits(records[0].result, [r.run.get("seed") for r in records]),
            }
        )
    return settings


def build_table_report(
    table: str | Mapping[str, Any],
    out: str | os.PathLike | None = None,
    *,
    overrides: list[str] | None = None,
    command: str | None = None,
) -> Path:
    """Write the HTML report of a table and return its path.

    Args:
        table: the table's name (a config of ``conf/table/``) or its config.
        out: the HTML file; default ``<table out_dir>/report.html``.
        overrides: Hydra overrides used to compose a table given by name
            (``paths.root_dir=...``).
        command: the command that made the report, printed in its footer.

    Raises:
        ReportError: the table's CSV or Markdown is missing (run make_table first), or a
            run record is malformed (the message names the file).
    """
    from miabench.pipeline.table import table_inputs

    spec = _table_config(table, list(overrides or []))
    out_dir, name = Path(spec["out_dir"]), spec["name"]
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    for path in (csv_path, md_path):
        if not path.is_file():
            raise ReportError(
                f"{path}: no such file; write the table first with "
                f"`python -m miabench.make_table table={name}`"
            )
    try:
        frame = pd.read_csv(csv_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ReportError(f"{csv_path}: not a readable CSV ({err})") from err
    header, rows, notes = markdown_table(md_path)
    plot_column = None
    utility = spec.get("utility") or {}
    if utility.get("plot") and "defense" in frame:
        candidate = f"{utility.get('role', 'nonmember')}_{utility['plot']}"
        plot_column = candidate if candidate in frame else None
    plot_svg = None
    if plot_column:
        from miabench.results.privacy_utility_plot import privacy_utility_figure

        plot_svg = to_svg(privacy_utility_figure(frame, plot_column, spec.get("title", name)))
    context = {
        "title": f"Membership audit: {spec.get('title', name)}",
        "source": str(csv_path),
        "command": command,
        "table_command": spec.get("command"),
        "rows_summary": row_summaries(frame),
        "reference": REFERENCE,
        "header": header,
        "rows": rows,
        "notes": notes,
        "tests": paired_tests(frame),
        "plot_svg": plot_svg,
        "plot_column": plot_column,
        "settings": _settings(table_inputs(OmegaConf.create(spec))),
        "band_method": BAND_METHOD,
        "min_nonmembers_per_fpr": summary.MIN_NONMEMBERS_PER_FPR,
    }
    return _write("table.html.j2", context, Path(out) if out else out_dir / REPORT)
