"""MINT tables (DeAlcala et al., Tables 1 and 2): rows = auditable data, columns = N.

Each MINT auditor run (``results.json`` of ``run_attack`` with ``attack=mint*``) gives one
cell per (auditor architecture, layer set, N): the accuracy of the auditor's own 0.5
decision on the test half (what the paper reports), its AUC and TPR at 1 % FPR. The
published accuracies sit beside them, matched by the paper column a measured N stands for
(``columns`` in the table config, e.g. the proxy's N = 15 000 stands for "50K").
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import binomtest

from miabench.metrics.roc import ci_key, note_key
from miabench.results.markdown import NOT_OBSERVABLE, interval_cell, to_markdown
from miabench.results.runs import collect_results
from miabench.utils.io import atomic_write, atomic_write_text

#: layer set → the paper's row name
ROWS: dict[tuple[str, ...], str] = {
    ("conv1",): "conv_layer_1",
    ("conv2",): "conv_layer_2",
    ("conv3",): "conv_layer_3",
    ("conv4",): "conv_layer_4",
    ("embedding",): "model_outcome",
    ("conv1", "conv2", "conv3", "conv4"): "all_conv_layers",
}
# the same rows tapped at each stage's final convolution (mint.tap=.last, the paper's wording)
ROWS.update(
    {
        tuple(f"{layer}.last" for layer in layers): row
        for layers, row in list(ROWS.items())
        if layers != ("embedding",)
    }
)
ARCH_TITLES = {"mlp": "Vanilla MINT model (MLP), cf. Table 1", "cnn": "CNN MINT model, cf. Table 2"}
#: columns of :func:`mint_cells` (also when no run gave a cell, so filters need no guard)
CELL_COLUMNS = (
    "arch",
    "auditable_data",
    "n_train",
    "accuracy",
    "auc",
    "tpr_at_1pct_fpr",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "auc_ci_low",
    "auc_ci_high",
    "tpr_ci_low",
    "tpr_ci_high",
    "tpr_note",
    "ci_unit",
    "n_test",
    "n_test_members",
    "n_test_nonmembers",
    "n_fit",
    "victim_key",
)
TPR = "tpr_at_1pct_fpr"
#: the nearest-identity auditor (attacks/identity_proximity.py): a diagnostic row, no paper value
DIAGNOSTIC = "nearest_identity"


def load_mint_targets(name_or_path: str | os.PathLike) -> pd.DataFrame:
    """A published MINT table: bundled name (``mint2024_table1_mlp``) or CSV path.

    Raises:
        FileNotFoundError: neither exists.
        ValueError: the CSV lacks ``auditable_data`` or an ``acc_*`` column.
    """
    path = Path(name_or_path)
    if not path.is_file():
        resource = resources.files("miabench") / "targets" / f"{name_or_path}.csv"
        if not resource.is_file():
            raise FileNotFoundError(f"no MINT targets file or bundled name {str(name_or_path)!r}")
        path = Path(str(resource))
    frame = pd.read_csv(path)
    if "auditable_data" not in frame or not any(c.startswith("acc_") for c in frame):
        raise ValueError(f"{path}: expected columns auditable_data, acc_1k, ...; got {list(frame)}")
    return frame


def mint_cells(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (arch, auditable data, N) with accuracy, AUC and TPR@1%FPR.

    MINT auditors give ``arch`` mlp / cnn; the nearest-identity diagnostic gives ``arch``
    :data:`DIAGNOSTIC` on the model outcome.

    Raises:
        ValueError: the same cell measured by two runs (naming both victims' keys), or a
            MINT layer set without a paper row.
    """
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    for result in results:
        for name, metrics in result.get("attacks", {}).items():
            describe = metrics.get("describe", {})
            kind = str(describe.get("class", ""))
            if kind.endswith("IdentityProximityAuditor"):
                key = (DIAGNOSTIC, ROWS[("embedding",)], int(describe["n_train"]))
            elif kind.endswith("MintAuditor"):
                layers = tuple(describe["layers"])
                if layers not in ROWS:
                    raise ValueError(f"attack {name}: layers {list(layers)} have no MINT table row")
                key = (describe["arch"], ROWS[layers], int(describe["n_train"]))
            else:
                continue
            auc_ci, tpr_ci, unit = _intervals(metrics)
            accuracy_ci = accuracy_interval(metrics)
            cell = {
                "arch": key[0],
                "auditable_data": key[1],
                "n_train": key[2],
                "accuracy": metrics.get("accuracy_at_decision"),
                "auc": metrics.get("auc"),
                TPR: metrics.get(TPR),
                "accuracy_ci_low": accuracy_ci[0],
                "accuracy_ci_high": accuracy_ci[1],
                "auc_ci_low": auc_ci[0],
                "auc_ci_high": auc_ci[1],
                "tpr_ci_low": tpr_ci[0],
                "tpr_ci_high": tpr_ci[1],
                "tpr_note": metrics.get(note_key(TPR)),
                "ci_unit": unit,
                "n_test": metrics.get("n_test"),
                "n_test_members": metrics.get("n_test_members"),
                "n_test_nonmembers": metrics.get("n_test_nonmembers"),
                "n_fit": (describe.get("n_train_members") or 0)
                + (describe.get("n_train_nonmembers") or 0),
                "victim_key": result["run"].get("victim_key"),
            }
            if key in rows:
                raise ValueError(
                    f"two runs fill MINT cell {key}: victims {rows[key]['victim_key']} and "
                    f"{cell['victim_key']}; narrow table.results or include_victims"
                )
            rows[key] = cell
    return pd.DataFrame(list(rows.values()), columns=list(CELL_COLUMNS))


def accuracy_interval(metrics: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """The interval of the accuracy the table shows, the auditor's accuracy at its own 0.5
    decision (``accuracy_at_decision``): the recorded ``accuracy_at_decision_ci95`` where
    results.json has it, else Wilson's score interval from that accuracy and ``n_test``
    (scipy's ``binomtest``; it counts test images as independent, so by identity it is
    narrower than the truth). Never ``accuracy_ci95``: that is the accuracy at the threshold
    calibrated on the other half, another number."""
    level = float(metrics.get("ci_level") or 0.95)
    recorded = metrics.get(ci_key("accuracy_at_decision", level))
    if recorded:
        return float(recorded[0]), float(recorded[1])
    accuracy, n = metrics.get("accuracy_at_decision"), metrics.get("n_test")
    if accuracy is None or not n:
        return None, None
    found = binomtest(int(round(float(accuracy) * int(n))), int(n)).proportion_ci(
        confidence_level=level, method="wilson"
    )
    return float(found.low), float(found.high)


def _intervals(metrics: Mapping[str, Any]) -> tuple[list[Any], list[Any], str | None]:
    """The AUC's and TPR@1%FPR's intervals of a results.json attack entry, and how they were
    resampled (``group``/``sample``). Results written before evaluation.bootstrap have the
    AUC's identity-bootstrap interval as ``auc_ci95_by_group``."""
    level = float(metrics.get("ci_level") or 0.95)
    auc = metrics.get(ci_key("auc", level))
    tpr = metrics.get(ci_key(TPR, level)) or [None, None]
    unit = metrics.get("bootstrap_unit")
    if auc is None and metrics.get("auc_ci95_by_group"):
        auc, unit = metrics["auc_ci95_by_group"], "group"
    return list(auc or [None, None]), list(tpr), unit


def _cell_text(cells: pd.DataFrame, metric: str) -> pd.Series:
    """Per row, the metric with its interval (``0.43 [0.35, 0.51]``) as one cell."""
    if metric == "auc":
        return cells.apply(lambda c: interval_cell(c.auc, c.auc_ci_low, c.auc_ci_high), axis=1)
    return cells.apply(
        lambda c: interval_cell(c[TPR], c.tpr_ci_low, c.tpr_ci_high, note=c.tpr_note), axis=1
    )


def build_mint_table(
    cells: pd.DataFrame,
    targets: Mapping[str, pd.DataFrame],
    columns: Mapping[int, str],
    control: pd.DataFrame | None = None,
) -> dict[str, pd.DataFrame]:
    """Per architecture: rows = auditable data (paper order), measured and published columns.

    Args:
        cells: from :func:`mint_cells`.
        targets: arch → published CSV (``auditable_data, acc_1k, acc_50k, acc_100k``).
        columns: measured N → the paper column it stands for (``1k``, ``50k``, ``100k``).
        control: cells of the same auditors on a never-trained victim (same architecture,
            data and split); adds an ``untrained auc`` column per N.
    """
    tables = {}
    for arch, published in targets.items():
        frame = published[["auditable_data"]].copy()
        ours = cells[cells.arch == arch]
        for n, paper_column in sorted(columns.items()):
            measured = ours[ours.n_train == n].set_index("auditable_data")
            label = f"N={n}" + (
                "" if paper_column.lower() == f"{n // 1000}k" else f" (for {paper_column.upper()})"
            )
            # an architecture without any run keeps empty (text) columns
            values = frame.auditable_data.map(measured["accuracy"]) if len(ours) else None
            frame[f"accuracy {label}"] = values
            # Wilson (or recorded) interval beside the numeric accuracy column
            if len(measured):
                interval = measured.apply(
                    lambda c: interval_cell(c.accuracy, c.accuracy_ci_low, c.accuracy_ci_high),
                    axis=1,
                )
                frame[f"accuracy {label} [95 % CI]"] = frame.auditable_data.map(interval).fillna(
                    "—"
                )
            for metric in ("auc", TPR):
                # the value with its interval in one cell, "—" where no run measured it
                text = _cell_text(measured, metric) if len(measured) else pd.Series(dtype=str)
                frame[f"{metric} {label}"] = frame.auditable_data.map(text).fillna("—")
            if control is not None:
                theirs = control[(control.arch == arch) & (control.n_train == n)]
                frame[f"untrained auc {label}"] = frame.auditable_data.map(
                    theirs.set_index("auditable_data")["auc"]
                )
            frame[f"paper accuracy {paper_column.upper()}"] = published[
                f"acc_{paper_column.lower()}"
            ]
        for paper_column in ("1k", "50k", "100k"):
            name = f"paper accuracy {paper_column.upper()}"
            if name not in frame and f"acc_{paper_column}" in published:
                frame[name] = published[f"acc_{paper_column}"]
        tables[arch] = frame
    return tables


def diagnostic_table(
    cells: pd.DataFrame, columns: Mapping[int, str], control: pd.DataFrame | None = None
) -> pd.DataFrame | None:
    """The nearest-identity diagnostic per N (accuracy at its own decision, AUC, TPR@1%FPR,
    and with ``control`` the never-trained victim's AUC), or None when no run measured it."""
    ours = cells[cells.arch == DIAGNOSTIC]
    if ours.empty:
        return None
    rows = []
    for n in sorted(columns):
        cell = ours[ours.n_train == n]
        if not len(cell):
            continue
        row = {
            "N": n,
            "accuracy": cell.accuracy.iloc[0],
            "auc": _cell_text(cell, "auc").iloc[0],
            TPR: _cell_text(cell, TPR).iloc[0],
        }
        if control is not None:
            theirs = control[(control.arch == DIAGNOSTIC) & (control.n_train == n)]
            row["untrained auc"] = theirs.auc.iloc[0] if len(theirs) else None
        rows.append(row)
    return pd.DataFrame(rows)


def _test_counts(cells: pd.DataFrame) -> str:
    if not len(cells):
        return "0 samples"
    if cells.n_test_members.notna().any():
        return (
            f"{int(cells.n_test_members.max())} members + "
            f"{int(cells.n_test_nonmembers.max())} non-members"
        )
    return f"{int(cells.n_test.max())} samples"


def _unit_text(cells: pd.DataFrame) -> str:
    units = set(cells.ci_unit.dropna()) if len(cells) else set()
    if units == {"group"}:
        return (
            "from resampling whole test identities (members' and non-members' separately; "
            "metrics/bootstrap.py), since images of one identity are not independent evidence"
        )
    if units == {"sample"}:
        return "from resampling test samples (members and non-members separately)"
    return "(by identity or by sample, per results.json bootstrap_unit)"


def is_untrained(result: Mapping[str, Any]) -> bool:
    """A run whose victim trained zero epochs from its random initialisation (the control of
    a MINT table); a released backbone (``victim.net.weights``) also trains zero epochs here
    but is the audited model, not a control."""
    run = result["run"]
    released = bool((run.get("victim_info") or {}).get("weights_sha256"))
    return run.get("victim_epochs") == 0 and not released


def _selected(table: Any, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results a MINT table shows: its victims, data and calibration grouping."""
    if table.get("include_victims"):
        results = [r for r in results if r["run"]["victim"] in table.include_victims]
    if table.get("data_name"):
        results = [r for r in results if r["run"].get("data_name") == table.data_name]
    if table.get("calibration_by_group") is not None:
        wanted = bool(table.calibration_by_group)
        results = [r for r in results if bool(r["run"].get("calibration_by_group")) == wanted]
    return results


def _runs_lines(results: Sequence[Mapping[str, Any]], cells: pd.DataFrame) -> list[str]:
    """The "Runs" section: the victim, its split, the auditors' test set and its utility."""
    run = results[0]["run"]
    utility = results[0].get("utility", {})
    lines = [
        "## Runs",
        "",
        f"- victim `{run.get('victim')}` on `{run.get('dataset')}`, victim key "
        f"`{run.get('victim_key')}`, {run.get('n_members')} members / "
        f"{run.get('n_nonmembers')} non-members (disjoint by identity and content)",
        f"- auditors' test set: {_test_counts(cells)} (balanced, the same for every "
        "cell); accuracy = the auditor's own 0.5 decision",
        f"- auc and {TPR}: value [95 % bootstrap interval] {_unit_text(cells)}; "
        f"{NOT_OBSERVABLE} = not observable (fewer than 100 test non-members for 1 % FPR)",
    ]
    for role in ("member", "nonmember"):
        u: dict[str, Any] = {}
        for k, v in utility.get(role, {}).items():
            # dataset-level metrics come nested (e.g. verification: {accuracy, TAR@FAR})
            u.update({f"{k}.{kk}": vv for kk, vv in v.items()} if isinstance(v, dict) else {k: v})
        shown = ", ".join(
            f"{k} {v:.4f}" for k, v in sorted(u.items()) if isinstance(v, (int, float)) and v == v
        )
        lines.append(f"- victim utility on {role}s: {shown}")
    lines.append("")
    return lines


def write_mint_table(table: Any, paths: Sequence[Path]) -> tuple[Path, Path]:
    """Write ``<name>.md`` (one section per architecture) and ``<name>.csv`` (all cells).

    ``table`` is the ``table`` config node: ``name``, ``title``, ``out_dir``, ``command``,
    ``targets`` (arch → targets CSV path), ``columns`` (N → paper column), optional
    ``include_victims``, ``data_name``, ``calibration_by_group``, ``control`` (add the
    never-trained victim's AUC beside every cell) and ``notes``. Runs of a never-trained
    victim (``victim_epochs`` 0) are only ever the control.
    """
    results = _selected(table, collect_results(paths))
    # never-trained victims (trainer.max_epochs=0) are the control, never a measured cell
    controls = [r for r in results if is_untrained(r)]
    results = [r for r in results if not is_untrained(r)]
    cells = mint_cells(results)
    control = mint_cells(controls) if table.get("control") else None
    targets = {arch: load_mint_targets(path) for arch, path in table.targets.items()}
    columns = {int(n): str(label) for n, label in table.columns.items()}
    tables = build_mint_table(cells, targets, columns, control)

    out = Path(table.out_dir)
    lines = [f"# {table.title}", ""]
    for arch, frame in tables.items():
        lines += [f"## {ARCH_TITLES.get(arch, arch)}", "", to_markdown(frame), ""]
    diagnostic = diagnostic_table(cells, columns, control)
    if diagnostic is not None:
        lines += [
            "## Diagnostic: nearest-identity auditor on the model outcome (not in the paper)",
            "",
            "Cosine to the nearest member identity minus to the nearest non-member identity "
            "among the auditor's N training samples (attacks/identity_proximity.py): what "
            "learning *where the training identities lie* is worth on the test half. Well "
            "above 0.5: test identities were seen in training (identity leakage); below 0.5: "
            "the victim keeps its member identities apart, so an auditor that memorised "
            "identity positions is inverted on new identities.",
            "",
            to_markdown(diagnostic),
            "",
        ]
    if results:
        lines += _runs_lines(results, cells)
    if control is not None:
        lines.append(
            "- untrained auc: the same auditors, data and split on the same architecture never "
            f"trained (trainer.max_epochs=0; {len(controls)} run(s)): what the protocol gives "
            "when the victim learned nothing, against which a measured AUC is read"
        )
    lines += [f"- {note}" for note in table.get("notes") or []]
    lines += [f"- Regenerate: `{table.command}`", f"- Result files: {len(paths)}", ""]
    md = atomic_write_text(out / f"{table.name}.md", "\n".join(lines))
    csv = atomic_write(out / f"{table.name}.csv", lambda p: cells.to_csv(p, index=False))
    return md, csv
