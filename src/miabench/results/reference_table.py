"""Table and plots of reference-model attacks (``attack=reference``).

One row per (run, attack): the target model's metrics on its test half and the pooled
leave-one-out metrics over every model of the population as the target, side by side; the
run's log-log ROC plots and strength-vs-number-of-references plot are copied beside it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from miabench.metrics.roc import ci_key, note_key
from miabench.results.markdown import markdown_view, to_markdown
from miabench.results.runs import collect_results, recorded_end
from miabench.utils.io import atomic_write, atomic_write_text

#: metrics reported per attack, for the target and pooled over leave-one-out
METRICS = ("auc", "tpr_at_0.1pct_fpr", "tpr_at_1pct_fpr")
#: plots of a run folder copied beside the table (relative paths)
PLOTS = (
    "roc_loglog.png",
    "roc_linear.png",
    "leave_one_out/roc_loglog.png",
    "strength_vs_references.png",
)


def plot_strength(
    strength: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike,
    title: str,
    where: str = "pooled",
) -> Path:
    """AUC and TPR at 1 % FPR against the number of references, one line per attack.

    Args:
        strength: ``results["strength_vs_references"]``: per attack, points with
            ``n_references`` and ``<where>_<metric>_mean`` / ``_std``.
        path: the PNG to write.
        title: figure title.
        where: ``pooled`` (leave-one-out over every model) or ``target``.
    """
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot state, no GUI backend
    axes = fig.subplots(1, 2)
    for ax, metric, label in (
        (axes[0], "auc", "ROC AUC"),
        (axes[1], "tpr_at_1pct_fpr", "TPR at 1 % FPR"),
    ):
        for attack, points in strength.items():
            if not points:
                continue
            shown = [p for p in points if p.get(f"{where}_{metric}_mean") is not None]
            if not shown:  # e.g. a TPR at an FPR the rows cannot resolve
                continue
            x = [p["n_references"] for p in shown]
            y = [p[f"{where}_{metric}_mean"] for p in shown]
            err = [p[f"{where}_{metric}_std"] for p in shown]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=attack)
        ax.set_xscale("log", base=2)
        sizes = sorted({p["n_references"] for points in strength.values() for p in points})
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("number of reference models")
        ax.set_ylabel(f"{label} ({where})")
        ax.grid(True, alpha=0.3)
    axes[0].axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axes[1].axhline(0.01, color="grey", linestyle=":", linewidth=1)
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=150))


def reference_frame(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (run, attack): target and leave-one-out metrics and the run's setting.

    Raises:
        ValueError: naming the file, when a result has no ``run.reference`` (not a
            reference-attack run).
    """
    rows = []
    for result in results:
        reference = result["run"].get("reference")
        if reference is None:
            raise ValueError(f"{result.get('_path', 'a result')}: not a reference-attack run")
        trained = [m["training"].get("wall_time_s") for m in reference["models"]]
        known = [t for t in trained if t is not None]
        for attack, metrics in result["attacks"].items():
            loo = result.get("leave_one_out", {}).get(attack, {})
            row: dict[str, Any] = {
                "victim": result["run"]["victim"],
                "dataset": result["run"]["dataset"],
                "defense": result["run"]["defense"],
                "references": reference["n_models"],
                "knowledge": reference["knowledge"],
                "attack": attack,
            }
            for where, values in (("target", metrics), ("loo", loo)):
                for m in METRICS:
                    # the value, its bootstrap interval and why it is missing (if it is)
                    interval = values.get(ci_key(m, values.get("ci_level", 0.95))) or [None] * 2
                    row[f"{where}_{m}"] = values.get(m)
                    row[f"{where}_{m}_lo"], row[f"{where}_{m}_hi"] = interval
                    row[f"{where}_{m}_note"] = values.get(note_key(m))
            for m in METRICS[1:]:
                # where the pooled pairs' distinct non-member samples cannot resolve the FPR,
                # the TPR at the FPR the pairs do reach, with its two-way bootstrap interval
                reached = loo.get(f"{m}_reached_ci95") or [None] * 2
                row[f"loo_{m}_reached"] = loo.get(f"{m}_reached")
                row[f"loo_{m}_reached_lo"], row[f"loo_{m}_reached_hi"] = reached
                row[f"loo_{m}_reached_fpr"] = loo.get(f"{m}_reached_fpr")
            row["target_test_members"] = metrics.get("n_test_members")
            row["target_test_nonmembers"] = metrics.get("n_test_nonmembers")
            row["loo_pairs"] = loo.get("n_pairs")
            row["train_s_per_model"] = sum(known) / len(known) if known else None
            rows.append(row)
    return pd.DataFrame(rows)


def _setting(result: Mapping[str, Any]) -> tuple[Any, ...]:
    run = result["run"]
    reference = run["reference"]
    return (
        run["victim"],
        run["dataset"],
        run["defense"],
        run.get("seed"),
        reference["n_models"],
        reference["knowledge"],
        json.dumps(reference.get("recipe"), sort_keys=True, default=str),
    )


def newest_per_setting(
    results: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], int]:
    """Keep the newest result of each setting (folders left by older code are superseded,
    as in the generic table: by recorded end time, then path, never file modification
    time); return them and how many were left out."""
    newest: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for result in sorted(results, key=lambda r: (recorded_end(r), str(r["_path"]))):
        newest[_setting(result)] = result
    return list(newest.values()), len(results) - len(newest)


def write_reference_table(
    table: Mapping[str, Any], paths: Iterable[str | os.PathLike]
) -> tuple[Path, Path]:
    """Write ``<name>.md`` / ``.csv`` and copy each run's plots under ``table["out_dir"]``.

    The ``writer`` of a table config (``make_table`` calls it with the table config and the
    matched result files: the run records under ``<out_dir>/runs/``, which hold each run's
    plots). The plots of the run with the most references are copied to ``<out_dir>/``.

    Raises:
        ValueError: no result matched (names the table).
    """
    if OmegaConf.is_config(table):
        table = OmegaConf.to_container(table, resolve=True)
    paths = [Path(p) for p in paths]
    results = collect_results(paths)
    if not results:
        raise ValueError(f"table {table['name']}: no results.json matched {table.get('results')}")
    results, superseded = newest_per_setting(results)
    frame = reference_frame(results)
    out_dir = Path(table["out_dir"])
    name = table["name"]
    csv_path = atomic_write(out_dir / f"{name}.csv", lambda p: frame.to_csv(p, index=False))

    # each run's plots are in its record (runs/<run>/); the table's own figures are those of
    # the run with the most references
    largest = max(results, key=lambda r: r["run"]["reference"]["n_models"])
    copied = []
    run_dir = Path(largest["_path"]).parent
    for plot in PLOTS:
        src = run_dir / plot
        if src.exists():
            dest = out_dir / plot.replace("/", "_")
            if src.resolve() != dest.resolve():
                atomic_write(dest, lambda tmp, src=src: shutil.copyfile(src, tmp))
            copied.append(dest.relative_to(out_dir))
    notes = [
        f"Regenerate: `{table.get('command', '')}`",
        f"Result files: {len(paths)} ({superseded} older result(s) of the same setting left out)",
        "target_*: the target model (model 0), its test half of members and non-members "
        "(threshold metrics use the calibration half). loo_*: every model of the population "
        "in turn as the target with the others as references, pooled over all "
        "(sample, model) pairs (loo_pairs), which is what resolves TPR at 0.1 % FPR.",
        "Cells: value [95 % bootstrap interval]; target: test samples resampled (members "
        "and non-members separately, BCa for the AUC); loo: samples and models resampled "
        "together (two-way bootstrap: a pair counts as often as its sample and its model are "
        "drawn), so both the samples and the models' training randomness are in the interval. "
        "n/o = not observable: TPR at FPR x needs at least 10/x non-members, counted as "
        "distinct non-member samples for loo (pooled pairs of one sample are not independent; "
        "the CSV's _note column says how many there were). loo_tpr_at_<x>_reached: the pooled "
        "TPR at the FPR the non-member pairs reach (loo_..._reached_fpr, at most x), with its "
        "two-way bootstrap interval, which does count the pairs' dependence.",
        "train_s_per_model: mean training wall time per model (see run.reference.models in "
        "results.json for each model and how it was measured).",
        "Plots: " + ", ".join(f"`{p}`" for p in sorted({str(c) for c in copied})),
    ]
    lines = [
        f"# {table['title']}",
        "",
        to_markdown(markdown_view(frame)),
        "",
        *(f"- {n}" for n in notes),
    ]
    md_path = atomic_write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")
    return md_path, csv_path
