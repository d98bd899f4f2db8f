"""Tables and plots of Shafran et al.'s two claims: attack strength against output dimension
and against the task's uncertainty (``table=shafran2021_dimensionality`` /
``table=shafran2021_uncertainty``, results/shafran2021_claims/).

Rows are :func:`miabench.results.table.build_table` rows (every metric with its bootstrap
interval, member / non-member counts, seeds of a setting aggregated), one per setting, each
matched to a *point* of the table config: the first ``points`` entry whose ``match`` fields
(run fields of results.json: ``victim``, ``data_name``, ``direction``, ``image_size``, ...)
all equal the run's. Runs that match no point are left out, so a glob over a shared
output folder gives the same table as the sweep. A point may name its output dimension as a
product of config keys of the trained victim (read from its ``key.json``, e.g.
``[data.image_size, data.image_size, data.num_classes]``) and its unit.

With ``paired_reference: {match: {...}}``, every row whose runs were tested on exactly the
test samples of the reference's runs (same sample ids and labels, seed by seed) also gets
the paired difference row − reference of each attack's AUC and TPR at 1 % FPR
(``<attack>_auc_vs_ref``, ``_lo``, ``_hi``, ``_p``, ``_p_adj``, ``_test``, ``_sig``;
:func:`miabench.results.estimates.paired_difference`: a paired t over seeds when the two are
different victims, which one seed cannot test; a paired bootstrap of the samples when they
are the same victim); ``_sig`` after the table's ``multiple_testing`` correction (Holm by
default). An attack the reference lacks (the classifier's confidence) is compared with the
reference's ``reconstruction``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from miabench.metrics.bootstrap import ScoredRows
from miabench.results.estimates import (
    apply_multiple_testing,
    bootstrap_settings,
    multiple_testing_note,
    paired_columns,
    paired_difference,
    same_victim,
)
from miabench.results.runs import (
    VICTIM_KEY,
    collect_results,
    describe_grouping,
    group_seeds,
    held_out_scores,
    run_file,
)
from miabench.results.table import TPR_COLUMN, build_table, no_targets, write_table
from miabench.utils.io import atomic_write, read_json

#: x axes a claims table can plot against
X_AXES = ("output_dim", "point")


def match_point(run: Mapping[str, Any], points: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the first point whose ``match`` fields all equal the run's, or None."""
    for index, point in enumerate(points):
        if all(run.get(k) == v for k, v in (point.get("match") or {}).items()):
            return index
    return None


def output_dimension(victim_key: Mapping[str, Any], keys: Sequence[str], where: str) -> int:
    """Product of the config values at ``keys`` (dotted, e.g. ``data.num_classes``).

    Raises:
        KeyError: naming ``where`` (the key file) and the missing key.
    """
    config = OmegaConf.create(dict(victim_key))
    dims = []
    for key in keys:
        value = OmegaConf.select(config, key)
        if value is None:
            raise KeyError(f"{where}: no config value at {key!r} for the output dimension")
        dims.append(int(value))
    return int(math.prod(dims))


def _victim_key(result: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The trained victim's key (its config): the ``victim_key.json`` copied beside the run's
    record (a fresh clone has no victims), else the cached victim's ``key.json``."""
    path = (
        run_file(result, VICTIM_KEY) or Path(str(result["run"].get("victim_dir", ""))) / "key.json"
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the victim's key file is needed for its output dimension (neither "
            f"{VICTIM_KEY} beside {result.get('_path')} nor the cached victim's key.json); "
            "rerun the experiment to restore it"
        )
    return read_json(path), str(path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def claims_frame(
    results: Sequence[Mapping[str, Any]],
    points: Sequence[Mapping[str, Any]],
    columns: Mapping[str, Any],
    utility: Sequence[str],
    per_seed: bool = False,
) -> tuple[pd.DataFrame, list[list[Mapping[str, Any]]]]:
    """One row per setting matched to a point, in point order (then output dimension).

    Returns:
        The frame (``point``, ``output_dim``, ``output_dim_of`` then the
        :func:`~miabench.results.table.build_table` columns without published numbers) and
        the runs of each row.
    """
    settings, _ = group_seeds(results)
    if per_seed:
        settings = [[run] for runs in settings for run in runs]
    rows: list[tuple[tuple[Any, ...], pd.DataFrame, list[Mapping[str, Any]]]] = []
    for runs in settings:
        run = runs[0]["run"]
        index = match_point(run, points)
        if index is None:
            continue
        point = points[index]
        dim, dim_of = math.nan, None
        if point.get("output_dim"):
            key, where = _victim_key(runs[0])
            dim = output_dimension(key, list(point["output_dim"]), where)
            dim_of = point.get("output_dim_unit")
        frame = build_table(
            runs, no_targets(columns), columns, include_missing=False, utility_metrics=utility
        )
        frame = frame.drop(columns=[c for c in frame if c.endswith(("_published", "_delta"))])
        # nothing published to compare with: "<col>_measured" is just "<col>"
        frame = frame.rename(columns=lambda c: c.replace("_measured", "", 1))
        frame.insert(0, "output_dim_of", dim_of)
        frame.insert(0, "output_dim", dim)
        frame.insert(0, "point", point.get("label", run["victim"]))
        sort = (index, dim, str(run.get("seed")))
        rows.append((sort, frame, runs))
    if not rows:
        raise ValueError(
            "no result matches the table's points (check table.points[*].match against the "
            "runs' victim / data_name / direction / image_size)"
        )
    rows.sort(key=lambda r: r[0])
    frame = pd.concat([f for _, f, _ in rows], ignore_index=True)
    frame["output_dim"] = pd.to_numeric(frame["output_dim"]).astype("Int64")
    frame.attrs = {"grouping": describe_grouping([r for _, _, runs in rows for r in runs])}
    return frame, [runs for _, _, runs in rows]


def _paired(
    runs: Sequence[Mapping[str, Any]],
    reference: Sequence[Mapping[str, Any]],
    attack: str,
    ref_attack: str,
) -> dict[str, Any] | None:
    """Paired difference (runs − reference) of ``attack`` vs ``ref_attack``, or None when the
    two were not tested on the same samples (or a run lacks its scores)."""
    by_seed = {r["run"].get("seed"): r for r in reference}
    scored = []
    same = True
    for run in runs:
        ref = by_seed.get(run["run"].get("seed"))
        if ref is None:
            return None
        ours, theirs = held_out_scores(run, [attack]), held_out_scores(ref, [ref_attack])
        if ours is None or theirs is None:
            return None
        a = ours[0].rename(columns={f"{attack}.score": "score"})
        b = theirs[0].rename(columns={f"{ref_attack}.score": "score_ref", "label": "label_ref"})
        if sorted(a["sample_id"]) != sorted(b["sample_id"]):
            return None
        merged = a.merge(b, on="sample_id")
        if not (merged["label"] == merged["label_ref"]).all():
            return None
        scored.append(ScoredRows.of(merged["label"], merged["score"], merged["score_ref"]))
        same = same and same_victim(run, ref)
    n_boot, level = bootstrap_settings([*runs, *reference])
    out: dict[str, Any] = {}
    for metric in ("auc", "tpr_at_1pct_fpr"):
        estimate = paired_difference(scored, metric, same, n_boot, level)
        out.update(paired_columns(f"{attack}_{metric}_vs_ref", estimate))
    return out


def add_paired_differences(
    frame: pd.DataFrame,
    runs: Sequence[Sequence[Mapping[str, Any]]],
    reference: Mapping[str, Any],
    attacks: Sequence[str],
) -> pd.DataFrame:
    """Columns of :func:`_paired` for every row tested on the reference's samples."""
    matches = [i for i, r in enumerate(runs) if match_point(r[0]["run"], [reference]) is not None]
    if not matches:
        return frame
    if len(matches) > 1:
        raise ValueError(
            f"table.paired_reference {dict(reference)} matches {len(matches)} settings "
            f"({[str(frame['point'].iloc[i]) for i in matches]}); add fields to its match"
        )
    ref_runs = runs[matches[0]]
    ref_attacks = set(ref_runs[0]["attacks"])
    rows = []
    for setting in runs:
        row: dict[str, Any] = {}
        for attack in attacks:
            if attack not in setting[0]["attacks"]:
                continue
            ref_attack = attack if attack in ref_attacks else "reconstruction"
            if ref_attack not in ref_attacks:
                continue
            row.update(_paired(setting, ref_runs, attack, ref_attack) or {})
        rows.append(row)
    extra = pd.DataFrame(rows, index=frame.index)
    frame = pd.concat([frame, extra], axis=1)
    frame.insert(3, "paired_reference", frame["point"].iloc[matches[0]])
    return frame


def _figure(ncols: int) -> Figure:
    fig = Figure(figsize=(5.5 * ncols, 4.5), layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot state
    return fig


def plot_claim(
    frame: pd.DataFrame,
    auc_columns: Mapping[str, str],
    x_axis: str,
    path: str | os.PathLike,
    title: str,
) -> Path:
    """AUC and TPR at 1 % FPR of every attack against ``x_axis``, with the intervals.

    ``auc_columns`` maps each attack to its AUC column (with ``_lo`` / ``_hi`` siblings);
    its TPR column is ``<attack>_tpr_at_1pct_fpr``, as :func:`build_table` names it.

    ``output_dim``: a log axis, each point labelled; ``point``: one position per row in
    table order. TPRs the test half cannot resolve are left out.
    """
    if x_axis not in X_AXES:
        raise ValueError(f"table.x_axis must be one of {X_AXES}, got {x_axis!r}")
    fig = _figure(2)
    axes = fig.subplots(1, 2)
    positions = (
        frame["output_dim"].astype(float).to_numpy()
        if x_axis == "output_dim"
        else np.arange(len(frame), dtype=float)
    )
    markers = "osD^v<>"
    attacks = list(auc_columns)
    offsets = np.linspace(-0.12, 0.12, max(len(attacks), 1))
    for ax, (metric, label) in zip(
        axes, (("auc", "ROC AUC"), (TPR_COLUMN, "TPR at 1 % FPR")), strict=True
    ):
        for i, attack in enumerate(attacks):
            col = auc_columns[attack] if metric == "auc" else f"{attack}_{TPR_COLUMN}"
            if col not in frame:
                continue
            y = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            lo = pd.to_numeric(frame[f"{col}_lo"], errors="coerce").to_numpy(dtype=float)
            hi = pd.to_numeric(frame[f"{col}_hi"], errors="coerce").to_numpy(dtype=float)
            keep = ~np.isnan(y)
            if not keep.any():
                continue
            x = positions * (1.0 + offsets[i]) if x_axis == "output_dim" else positions + offsets[i]
            err = np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)])
            ax.errorbar(
                x[keep],
                y[keep],
                yerr=err[:, keep],
                fmt=markers[i % len(markers)],
                capsize=3,
                label=attack,
            )
        if metric == "auc":
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_ylabel(label)
        # AUCs from 0.4 up, lower when an interval reaches below
        lows = [
            pd.to_numeric(frame[f"{c}_lo"], errors="coerce").min() for c in auc_columns.values()
        ]
        floor = min([0.4, *(v - 0.02 for v in lows if not pd.isna(v))])
        ax.set_ylim(-0.02 if metric != "auc" else floor, 1.02)
        if x_axis == "output_dim":
            ax.set_xscale("log")
            ax.set_xlabel(
                "output dimension per query (pixels x channels | pixels x classes | classes)"
            )
            for xv, name in zip(positions, frame["point"], strict=True):
                ax.annotate(
                    str(name),
                    (xv, ax.get_ylim()[0]),
                    textcoords="offset points",
                    xytext=(0, 4),
                    rotation=90,
                    fontsize=7,
                    ha="center",
                    va="bottom",
                )
        else:
            ax.set_xticks(positions, [str(p) for p in frame["point"]], rotation=15, fontsize=8)
            ax.set_xlabel("task (uncertainty of the output given the input decreases →)")
        # free space: the middle of the AUC panel (points at the top, labels at the bottom)
        # and the top left of the TPR panel, right of the lowest-dimensional point
        if metric == "auc":
            ax.legend(fontsize=8, loc="center" if x_axis == "output_dim" else "upper right")
        elif x_axis == "output_dim":
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.1, 1.0))
        else:
            ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=10)
    return atomic_write(Path(path), lambda p: fig.savefig(p, format="png", dpi=150))


def write_claims_table(table: DictConfig, paths: Sequence[Path]) -> tuple[Path, Path]:
    """Write ``<name>.md`` / ``.csv`` (+ ``_per_seed``), ``<name>.png`` and the runs' files.

    ``table`` keys: ``name``, ``title``, ``out_dir``, ``command``, ``columns`` (as every
    table), ``points`` (see the module docstring), ``x_axis`` (``output_dim`` or
    ``point``), ``utility`` (non-member utility metrics shown).
    """
    results = collect_results(paths)
    columns = OmegaConf.to_container(table.columns, resolve=True)
    points = OmegaConf.to_container(table.points, resolve=True)
    utility = list(table.get("utility") or [])
    frame, runs = claims_frame(results, points, columns, utility)
    per_seed, _ = claims_frame(results, points, columns, utility, per_seed=True)
    out = Path(table.out_dir)
    auc_columns = {
        spec["attack"]: col for col, spec in columns.items() if spec.get("metric") == "auc"
    }
    notes_paired: list[str] = []
    if table.get("paired_reference"):
        reference = OmegaConf.to_container(table.paired_reference, resolve=True)
        grouping = frame.attrs.get("grouping")
        frame = add_paired_differences(frame, runs, reference, list(auc_columns))
        method = str(table.get("multiple_testing", "holm"))
        frame, n_tests = apply_multiple_testing(frame, method)
        frame.attrs = {"grouping": grouping}
        notes_paired += [
            "`<attack>_auc_vs_ref` / `_tpr_at_1pct_fpr_vs_ref`: difference row − "
            "paired_reference on the same test samples; rows tested on other samples have "
            "none. Two different victims: paired t over seeds (one seed: not tested, no "
            "interval); the same victim: paired bootstrap of the samples (one resample "
            "applied to both). An attack the reference lacks is compared with its "
            "`reconstruction`.",
            multiple_testing_note(method, n_tests),
        ]
    plot_claim(
        frame,
        auc_columns,
        str(table.get("x_axis", "output_dim")),
        out / f"{table.name}.png",
        str(table.title),
    )
    notes = [
        f"Regenerate: `{table.command}`",
        f"Result files: {len(paths)}; plot: `{table.name}.png`",
        "output_dim: the victim's output per query, a product of config values of the "
        "trained victim (output_dim_of says which).",
        *notes_paired,
    ]
    return write_table(frame, out, table.name, table.title, notes, per_seed=per_seed)
