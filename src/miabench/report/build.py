"""Self-contained HTML audit reports of an attack folder (:func:`build_report`) or a table
(:func:`build_table_report`).

One file, no network request: CSS inline, figures inline SVG, thumbnails PNG data URIs,
rendered by Jinja2 from ``report/templates/`` (autoescaped). Every number comes from the
folder's results.json (or the table's CSV) except the ROC curves and their bands, which
are drawn from scores.csv after checking it gives results.json's AUC and counts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from miabench.metrics.roc import ci_key
from miabench.report import summary
from miabench.report.figures import (
    BAND_METHOD,
    Curve,
    loglog_xs,
    roc_linear_figure,
    roc_loglog_figure,
    roc_with_band,
    to_svg,
)
from miabench.report.records import AttackRun, read_attack_folder
from miabench.report.samples import exposed_members
from miabench.utils.io import atomic_write_text

log = logging.getLogger(__name__)

REPORT = "report.html"
TEMPLATES = Path(__file__).resolve().parent / "templates"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = summary.pct
    env.filters["num"] = lambda v, d=3: "n/a" if v is None else f"{float(v):.{d}f}"
    env.filters["pvalue"] = lambda v: (
        "n/a" if v is None else (f"{v:.2g}" if v < 1e-3 else f"{v:.4f}")
    )
    env.filters["count"] = lambda v: "n/a" if v is None else f"{float(v):g}"
    return env


def _root() -> Path:
    return Path(os.environ.get("MIABENCH_ROOT", "."))


def _curves(run: AttackRun) -> dict[str, Curve]:
    test = run.test_rows()
    if test is None:
        return {}
    labels = test["label"].to_numpy(dtype=int)
    return {
        name: roc_with_band(
            name,
            test[f"{name}.score"].to_numpy(dtype=float),
            labels,
            info,
            float(info.get("ci_level") or 0.95),
        )
        for name, info in run.attacks.items()
    }


def _figures(curves: Sequence[Curve], title: str) -> dict[str, Any]:
    """Both ROC figures of ``curves`` with what the tests and readers check: the FPR the
    log-log curves are cut at and the lowest FPR a drawn curve reaches."""
    drawn = [loglog_xs(c)[0] for c in curves]
    return {
        "linear_svg": to_svg(roc_linear_figure(curves, title)),
        "loglog_svg": to_svg(roc_loglog_figure(curves, title)),
        "resolvable_fpr": max(c.resolvable_fpr for c in curves),
        "min_curve_fpr": min((float(x.min()) for x in drawn if len(x)), default=1.0),
    }


def _attack_rows(run: AttackRun, curves: Mapping[str, Curve]) -> list[dict[str, Any]]:
    rows = []
    title = f"{run.run.get('victim')} on {run.run.get('dataset')}"
    for name, info in run.attacks.items():
        level = float(info.get("ci_level") or 0.95)
        row = {
            "name": name,
            "info": info,
            "describe": info.get("describe") or {},
            "auc_ci": info.get(ci_key("auc", level)),
            "auc_method": summary.method_name(
                (info.get("ci_method") or {}).get(ci_key("auc", level))
            ),
            "points": [summary.operating_point(info, f) for f in summary.recorded_fprs(info)],
            "accuracy_ci": info.get(ci_key("accuracy", level)),
            "figures": _figures([curves[name]], f"{name}: {title}") if name in curves else None,
        }
        rows.append(row)
    return rows


def _write(template: str, context: Mapping[str, Any], out: Path) -> Path:
    html = _environment().get_template(template).render(**context)
    atomic_write_text(out, html)
    log.info("report: %s (%.0f kB)", out, out.stat().st_size / 1024)
    return out


def build_report(
    attack_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_exposed: int = 8,
    command: str | None = None,
) -> Path:
    """Write the HTML audit report of one attack folder and return its path.

    Args:
        attack_dir: the attack folder (results.json, scores.csv) or its results.json.
        out: the HTML file; default ``<attack_dir>/report.html``.
        data_dir: where embedded datasets live, for the thumbnails (default
            ``$MIABENCH_ROOT/data``).
        cache_dir: where split manifests live (default ``$MIABENCH_ROOT/outputs/cache``).
        n_exposed: how many exposed members to show.
        command: the command that made the report, printed in its footer.

    Raises:
        ReportError: results.json missing or malformed, or scores.csv inconsistent with it
            (the message names the file).
    """
    run = read_attack_folder(attack_dir)
    out = Path(out) if out is not None else run.folder / REPORT
    data_dir = Path(data_dir) if data_dir is not None else _root() / "data"
    cache_dir = Path(cache_dir) if cache_dir is not None else _root() / "outputs" / "cache"
    curves = _curves(run)
    head = summary.headline(run.attacks)
    exposed, exposed_notes = [], ["no scores.csv in the attack folder: no per-sample scores"]
    if run.scores is not None and head is not None:
        exposed, exposed_notes = exposed_members(
            run.run, run.test_rows(), head["attack"], data_dir, cache_dir, n_exposed
        )
    context = {
        "title": f"Membership audit: {run.run.get('victim')} on {run.run.get('dataset')}",
        "source": str(run.folder),
        "command": command,
        "headline": head,
        "audited": summary.audited(run.result),
        "limits": summary.limits(run.result),
        "attacks": _attack_rows(run, curves),
        "has_scores": run.scores is not None,
        "band_method": BAND_METHOD,
        "utility": run.result.get("utility") or {},
        "gap": run.result.get("generalization_gap") or {},
        "exposed": exposed,
        "exposed_notes": exposed_notes,
        "min_nonmembers_per_fpr": summary.MIN_NONMEMBERS_PER_FPR,
    }
    return _write("run.html.j2", context, out)
