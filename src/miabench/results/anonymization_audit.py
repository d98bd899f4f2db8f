"""The anonymization audit: one row per victim (face / plate detector, face-area segmenter)
and defense, judged by the strongest attack of each kind, beside the anonymizer's utility.

Each victim's runs (one per defense and seed; ``run.victim`` and ``run.data_name`` name the
victim) go through :func:`~miabench.results.privacy_utility.privacy_utility_frame`, which
gives every attack's AUC and TPR at 1 % FPR with intervals over seeds, every utility metric,
DP's ε and the paired test of each defense against the undefended victim of the same seed
(``_vs_none``); the reference-model runs of the same victim, when the table lists them, add
the best reference attack (``best_reference_*``, chosen on one half of the samples and
measured on the other). This module adds, per row:

- per attack *kind* (``table.kinds``: e.g. threshold/loss, label-only), the kind's strongest
  (``strongest_<kind>_*``)
  attack in that row (highest mean AUC over seeds) with its AUC, TPR at 1 % FPR, accuracy,
  precision and recall at the calibration half's threshold (t-intervals over seeds) and its
  paired difference from the undefended row's same attack;
- the generalization gap of the victim's loss, the mean loss of members and non-members and,
  where the table names a confidence attack, the mean of its score on each role.

Choosing a kind's strongest attack on the samples it is measured on favours it slightly (a
maximum over a few attacks); the CSV keeps every attack's own columns.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from miabench.results.estimates import estimate_columns, multiple_testing_note, seed_estimate
from miabench.results.markdown import markdown_view, to_markdown
from miabench.results.privacy_utility import REFERENCE, privacy_utility_frame
from miabench.results.privacy_utility_plot import plot_privacy_utility
from miabench.results.runs import (
    collect_results,
    group_seeds,
    read_run_csv,
    result_paths,
    run_file,
)
from miabench.results.table import INTERVAL_LEGEND
from miabench.utils.io import atomic_write, atomic_write_text

TPR = "tpr_at_1pct_fpr"
#: threshold metrics of an attack (on the test half, at the calibration half's threshold)
DECISION_METRICS = ("accuracy", "precision", "recall")


def victim_of(result: Mapping[str, Any]) -> str:
    """``<victim>/<data>``: what one audit row group is about."""
    run = result["run"]
    return f"{run.get('victim')}/{run.get('data_name')}"


def _mean(values: Iterable[Any]) -> float | None:
    found = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    return float(np.mean(found)) if found else None


def _role_means(
    runs: Sequence[Mapping[str, Any]], attacks: Sequence[str]
) -> dict[str, float | None]:
    """Mean ``<attack>.score`` of members and non-members (all rows), averaged over seeds,
    for the first of ``attacks`` a run scored (a detector's and a segmenter's confidence
    attacks have different names)."""
    per_role: dict[str, list[float]] = {"member": [], "nonmember": []}
    for run in runs:
        path = run_file(run, "scores.csv")
        if path is None:
            continue
        scores = read_run_csv(path)
        column = next((f"{a}.score" for a in attacks if f"{a}.score" in scores), None)
        if column is None:
            continue
        for role, values in per_role.items():
            values.append(float(scores.loc[scores["role"] == role, column].mean()))
    return {role: _mean(values) for role, values in per_role.items()}


def _kind_columns(
    row: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], kind: str, attacks: Sequence[str]
) -> dict[str, Any]:
    """The strongest of ``attacks`` in this row (by mean AUC) under ``strongest_<kind>_*``
    names (the prefix keeps them apart from an attack named like its kind)."""
    kind = f"strongest_{kind}"
    present = [a for a in attacks if row.get(f"{a}_auc") is not None and pd.notna(row[f"{a}_auc"])]
    if not present:
        return {f"{kind}_attack": None}
    best = max(present, key=lambda a: float(row[f"{a}_auc"]))
    out: dict[str, Any] = {f"{kind}_attack": best}
    for metric in ("auc", TPR):
        for key, value in row.items():
            prefix = f"{best}_{metric}"
            if key == prefix or (
                key.startswith(prefix + "_") and not key.startswith(prefix + "_at")
            ):
                out[f"{kind}_{metric}{key[len(prefix) :]}"] = value
    for metric in DECISION_METRICS:
        out.update(estimate_columns(f"{kind}_{metric}", seed_estimate(runs, best, metric)))
    return out


def audit_frame(
    results: Sequence[Mapping[str, Any]],
    kinds: Mapping[str, Sequence[str]],
    utility: Sequence[str],
    confidence: str | Sequence[str] | None = None,
    reference_results: Sequence[Mapping[str, Any]] = (),
    multiple_testing: str = "holm",
) -> pd.DataFrame:
    """One row per victim and defense (seeds aggregated), undefended first per victim.

    Args:
        results: results.json contents of the audit's attack runs.
        kinds: kind → the attacks of that kind (those a run lacks are passed over).
        utility: utility metrics of the non-members reported per row.
        confidence: an attack whose score is a confidence (e.g. ``confidence_max``), or
            several (the first a run has is used): its mean on members and non-members;
            None leaves those columns out.
        reference_results: ``attack=reference`` runs of the same victims and defenses.
        multiple_testing: ``holm`` or ``bh``, applied to each victim's tests together.

    Raises:
        ValueError: naming the file, when a result has no ``run.defense``.
    """
    if isinstance(confidence, str):
        confidence = [confidence]
    frames = []
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        groups.setdefault(victim_of(result), []).append(result)
    for victim, runs in groups.items():
        reference = [r for r in reference_results if victim_of(r) == victim]
        frame = privacy_utility_frame(
            runs,
            utility=utility,
            reference_results=reference,
            multiple_testing=multiple_testing,
        )
        # the runs each row aggregates (the newest per defense and seed, as the frame keeps)
        by_defense = {s[0]["run"]["defense"]: s for s in group_seeds(runs)[0]}
        extra = []
        for _, row in frame.iterrows():
            own = by_defense[row["defense"]]
            columns: dict[str, Any] = {"victim": victim}
            for kind, attacks in kinds.items():
                columns.update(_kind_columns(row, own, kind, attacks))
            gaps = [(r.get("generalization_gap") or {}).get("loss") for r in own]
            columns["generalization_gap_loss"] = _mean(gaps)
            for role in ("member", "nonmember"):
                losses = [((r.get("utility") or {}).get(role) or {}).get("loss") for r in own]
                columns[f"{role}_mean_loss"] = _mean(losses)
            if confidence is not None:
                for role, value in _role_means(own, confidence).items():
                    columns[f"{role}_mean_confidence"] = value
            extra.append(columns)
        merged = pd.concat([pd.DataFrame(extra), frame], axis=1)
        merged.attrs = frame.attrs
        frames.append(merged)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out.attrs = {"n_tests": sum(f.attrs.get("n_tests", 0) for f in frames)}
    return out


def summary_columns(frame: pd.DataFrame, kinds: Iterable[str], utility: Sequence[str]) -> list[str]:
    """The Markdown table's columns (the CSV has all): who, each kind's strongest attack,
    the gap and the role means, and the utility."""
    head = ["victim", "defense", "seeds", "epsilon"]
    for kind in (f"strongest_{k}" for k in kinds):
        for suffix in (
            "attack",
            "auc",
            TPR,
            "accuracy",
            "precision",
            "recall",
            f"auc_vs_{REFERENCE}",
        ):
            head.append(f"{kind}_{suffix}")
    head += ["best_reference_attack", "best_reference_auc", f"best_reference_{TPR}"]
    head += ["generalization_gap_loss", "member_mean_loss", "nonmember_mean_loss"]
    head += ["member_mean_confidence", "nonmember_mean_confidence"]
    head += [f"nonmember_{m}" for m in utility]
    siblings = ("_lo", "_hi", "_std", "_note", "_sig")
    keep = [c for c in head if c in frame]
    return keep + [f"{c}{s}" for c in keep for s in siblings if f"{c}{s}" in frame]


def write_anonymization_audit(
    table: Mapping[str, Any], paths: Iterable[str | os.PathLike]
) -> tuple[Path, Path]:
    """Write ``<name>.md`` / ``.csv`` and one privacy–utility plot per victim
    (``<name>_<victim>.png``) under ``table["out_dir"]``; the ``writer`` of
    ``conf/table/anonymization_audit.yaml``.

    Table keys: ``name``, ``title``, ``out_dir``, ``command``, ``kinds`` (kind → attacks),
    ``utility: {metrics, plot}``, optional ``confidence`` (an attack, or a list),
    ``reference.results`` (globs of reference-model runs) and ``multiple_testing``.

    Raises:
        ValueError: when no results.json matched (names the table).
    """
    if OmegaConf.is_config(table):
        table = OmegaConf.to_container(table, resolve=True)
    paths = list(paths)
    results = collect_results(paths)
    if not results:
        raise ValueError(f"table {table['name']}: no results.json matched {table.get('results')}")
    spec = dict(table.get("utility") or {})
    metrics = list(spec.get("metrics", ["loss"]))
    kinds = {str(k): list(v) for k, v in (table.get("kinds") or {}).items()}
    reference_paths = result_paths(list((table.get("reference") or {}).get("results") or []))
    method = str(table.get("multiple_testing", "holm"))
    frame = audit_frame(
        results,
        kinds,
        metrics,
        confidence=table.get("confidence"),
        reference_results=collect_results(reference_paths),
        multiple_testing=method,
    )
    out_dir, name = Path(table["out_dir"]), table["name"]
    # the plotted utility: the first of `plot` (a metric or a list) the victim reports
    # (mAP@0.5 for detectors, Dice for segmenters)
    wanted = spec.get("plot", metrics[0])
    candidates = [f"nonmember_{m}" for m in ([wanted] if isinstance(wanted, str) else wanted)]
    plots = []
    for victim, rows in frame.groupby("victim", sort=False):
        plot_column = next(
            (c for c in candidates if c in rows and rows[c].notna().any()), candidates[0]
        )
        stem = f"{name}_{victim.replace('/', '_')}"
        # every attack once: the strongest_* columns repeat one of them
        own = rows[[c for c in rows.columns if not c.startswith("strongest_")]]
        plot_privacy_utility(
            own.reset_index(drop=True),
            out_dir / f"{stem}.png",
            plot_column,
            f"{table['title']}: {victim}",
        )
        plots.append(f"`{stem}.png`")
    notes = [
        f"Regenerate: `{table.get('command', '')}`",
        f"Result files: {len(paths)} attack runs, {len(reference_paths)} reference-model runs.",
        "Per kind (" + ", ".join(f"{k}: {', '.join(v)}" for k, v in kinds.items()) + "): the "
        "kind's attack with the highest mean AUC in the row (chosen on the samples it is "
        "measured on: slightly optimistic); AUC and TPR at 1 % FPR on the test half, "
        "accuracy / precision / recall at the threshold chosen on the calibration half; "
        "mean ± std over seeds with a t-interval over seeds.",
        f"_vs_{REFERENCE}: that attack's paired difference from the undefended row of the same "
        "victim (same seeds and samples; paired t over seeds, or a paired bootstrap of the "
        "samples for a post-hoc defense on the undefended victim, e.g. output_boxes).",
        "generalization_gap_loss: non-member minus member mean loss; *_mean_loss: the "
        "victim's per-sample loss; *_mean_confidence: mean score of the "
        f"{table.get('confidence') or '(none)'} attack on each role.",
        f"Utility on non-members, on the victim's raw outputs: {', '.join(metrics)}. "
        "anonymization_recall: share of true face / plate pixels covered by the boxes at the "
        "deployment threshold (segmenter: predicted as face), the image mean; "
        "dataset_anonymization_recall pools every pixel.",
        f"Plots (nonmember_{spec.get('plot', metrics[0])} vs every attack's AUC): "
        + ", ".join(plots),
        "Every attack's own columns are in the CSV.",
        INTERVAL_LEGEND,
        multiple_testing_note(method, frame.attrs.get("n_tests", 0)) + " (per victim)",
    ]
    csv_path = atomic_write(out_dir / f"{name}.csv", lambda p: frame.to_csv(p, index=False))
    shown = frame[summary_columns(frame, kinds, metrics)]
    lines = [
        f"# {table['title']}",
        "",
        to_markdown(markdown_view(shown)),
        "",
        *(f"- {n}" for n in notes),
    ]
    md_path = atomic_write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")
    return md_path, csv_path
