"""Privacy–utility comparison of defenses: one row per defense, and a utility-vs-AUC plot.

Each row is one results.json of a comparison in which only ``defense=`` changed: the
victim's utility (on raw outputs), every attack's AUC and TPR at 1 % FPR, and DP's ε at δ
where the defense reports one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from miabench.results.table import collect_results, to_markdown
from miabench.utils.io import atomic_write, atomic_write_text

#: metrics where a lower value is better utility (the plot says which way is better)
LOWER_IS_BETTER = {"l1", "loss"}


def privacy_utility_frame(
    results: Sequence[Mapping[str, Any]],
    role: str = "nonmember",
    utility: Sequence[str] = ("l1", "psnr", "ssim"),
    tpr_key: str = "tpr_at_1pct_fpr",
) -> pd.DataFrame:
    """One row per defense (the newest result of each name), undefended first.

    Args:
        results: results.json contents (see :func:`miabench.results.table.collect_results`).
        role: whose utility to report (``nonmember``: how well the victim generalises).
        utility: utility metrics to include (missing ones are left empty).
        tpr_key: the attack metric reported beside the AUC.

    Raises:
        ValueError: naming the file, when a result has no ``run.defense``.
    """
    newest: dict[str, Mapping[str, Any]] = {}
    for result in results:
        defense = result["run"].get("defense")
        if defense is None:
            raise ValueError(f"{result.get('_path', 'a result')}: no run.defense")
        previous = newest.get(defense)
        mtime = os.path.getmtime(result["_path"]) if "_path" in result else 0.0
        if previous is None or mtime >= previous["_mtime"]:
            newest[defense] = {**result, "_mtime": mtime}
    attacks = sorted({a for r in newest.values() for a in r["attacks"]})
    rows = []
    for defense, result in newest.items():
        report = result["run"].get("defense_report") or {}
        row: dict[str, Any] = {
            "defense": defense,
            "epsilon": report.get("epsilon"),
            # as text: δ is far below the table's 4 decimals
            "delta": f"{report['delta']:g}" if "epsilon" in report else None,
            "noise_multiplier": report.get("noise_multiplier"),
            "epochs": result["run"].get("victim_epochs"),
        }
        values = (result.get("utility") or {}).get(role) or {}
        for metric in utility:
            row[f"{role}_{metric}"] = values.get(metric)
        for attack in attacks:
            scores = result["attacks"].get(attack) or {}
            row[f"{attack}_auc"] = scores.get("auc")
            row[f"{attack}_{tpr_key}"] = scores.get(tpr_key)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    order = frame["defense"].map(lambda d: (d != "none", d))
    return frame.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def plot_privacy_utility(
    frame: pd.DataFrame, path: str | os.PathLike, utility_column: str, title: str
) -> Path:
    """Utility (x) vs attack AUC (y): one marker per defense and attack, AUC 0.5 marked."""
    fig = Figure(figsize=(6.5, 5), layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot state, no GUI backend
    ax = fig.add_subplot()
    auc_columns = [c for c in frame.columns if c.endswith("_auc")]
    markers = "osD^v<>"
    for i, column in enumerate(auc_columns):
        ax.scatter(
            frame[utility_column],
            frame[column],
            marker=markers[i % len(markers)],
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
    return atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=150))


def write_privacy_utility(
    table: Mapping[str, Any],
    paths: Iterable[str | os.PathLike],
) -> tuple[Path, Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.png`` under ``table["out_dir"]``.

    The ``writer`` of a table config (``make_table`` calls it with the table config and
    the matched result files).

    Args:
        table: the table config: ``name``, ``title``, ``out_dir``, ``command``, and
            optionally ``utility: {role, metrics, plot}``.
        paths: results.json files of the comparison.

    Returns:
        ``(markdown_path, csv_path)``.

    Raises:
        ValueError: when there is no result to tabulate (names the table).
    """
    if OmegaConf.is_config(table):
        table = OmegaConf.to_container(table, resolve=True)
    paths = list(paths)
    results = collect_results(paths)
    if not results:
        raise ValueError(f"table {table['name']}: no results.json matched {table.get('results')}")
    spec = dict(table.get("utility") or {})
    role = spec.get("role", "nonmember")
    metrics = list(spec.get("metrics", ["l1", "psnr", "ssim"]))
    frame = privacy_utility_frame(results, role=role, utility=metrics)
    out_dir = Path(table["out_dir"])
    name = table["name"]
    csv_path = atomic_write(out_dir / f"{name}.csv", lambda p: frame.to_csv(p, index=False))
    plot_column = f"{role}_{spec.get('plot', metrics[0])}"
    plot_privacy_utility(frame, out_dir / f"{name}.png", plot_column, table["title"])
    notes = [
        f"Regenerate: `{table.get('command', '')}`",
        f"Result files: {len(paths)} (newest per defense kept)",
        f"Utility on {role}s, measured on the victim's raw outputs; AUC and TPR at 1 % FPR "
        "on the test half of members and non-members.",
        "epsilon: DP-SGD's ε at the given δ (Opacus RDP accountant), empty for non-DP defenses.",
        f"Plot: `{name}.png` ({plot_column} vs AUC).",
    ]
    lines = [f"# {table['title']}", "", to_markdown(frame), "", *(f"- {n}" for n in notes)]
    md_path = atomic_write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")
    return md_path, csv_path
