"""Tables of measured results next to published numbers (Markdown for people, CSV for code).

A table has one row per setting (its seeds' runs grouped by :func:`~miabench.results.runs.group_seeds`; one row per
run in the per-seed table) joined on ``(victim, dataset)`` with a targets CSV from ``miabench/targets/``; for every published
column it shows the measured value, the published one and their difference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miabench.results.estimates import (
    ESTIMATE_SIBLINGS,
    TEST_SIBLINGS,
    apply_multiple_testing,
    estimate_columns,
    multiple_testing_note,
    paired_attacks,
    paired_columns,
    seed_estimate,
    to_float,
)
from miabench.results.markdown import MISSING, NOT_OBSERVABLE, markdown_view, to_markdown
from miabench.results.runs import KEY, describe_grouping, group_seeds, grouping_lines, seeds_label
from miabench.utils.io import atomic_write, atomic_write_text

# metrics.roc.tpr_key(0.01), spelled out so the table's columns do not hang on an import
# (tests/test_startup.py checks the two agree).
#: Extra per-attack metric shown for every attack of the table (the low-FPR view).
TPR_COLUMN = "tpr_at_1pct_fpr"
UTILITY_METRICS = ("psnr", "ssim", "l1")
INTERVAL_LEGEND = (
    "Cells: one seed: value [lo, hi] = the run's bootstrap interval at its ci_level, 95 % by "
    "default (test samples resampled, members and non-members separately, BCa for the AUC; "
    "by identity where results say bootstrap_unit group): it covers the test samples only, "
    "not how the victim "
    "trained. Several seeds: mean ± std over seeds [Student's t-interval over the per-seed "
    "values, mean ± t(k−1) · sd / √k, which counts training randomness; very wide with 2 "
    "seeds]; each seed's value is in the CSV's _per_seed column and the per-seed table. "
    f"{NOT_OBSERVABLE} = not observable: TPR at FPR x needs at least 10/x test non-members "
    "(below that one false positive is a tenth of x and the estimate is biased up); the CSV's "
    "_note column says how many there were, and results.json gives the TPR at the FPR the "
    "test does reach with its Clopper-Pearson interval (tpr_at_<x>pct_fpr_reached)."
)

ColumnSpec = Mapping[str, Any] | Sequence[str]


def _bundled_targets() -> list[str]:
    folder = resources.files("miabench") / "targets"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".csv"))


def load_targets(name_or_path: str | os.PathLike) -> pd.DataFrame:
    """Published numbers: a bundled targets file by name, or any CSV by path.

    Args:
        name_or_path: stem of a file in ``miabench/targets/`` (e.g. ``"shafran2021_table1"``)
            or a path to a CSV with ``victim`` and ``dataset`` columns.

    Returns:
        The targets as a DataFrame, one row per (victim, dataset).

    Raises:
        FileNotFoundError: neither a bundled name nor an existing file.
        ValueError: the key columns are missing or a (victim, dataset) appears twice.
    """
    path = Path(name_or_path)
    if path.suffix == ".csv" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"targets file not found: {path}")
        frame = pd.read_csv(path)
        source = str(path)
    else:
        resource = resources.files("miabench") / "targets" / f"{name_or_path}.csv"
        if not resource.is_file():
            raise FileNotFoundError(
                f"no bundled targets named {name_or_path!r}; available: {_bundled_targets()}"
            )
        with resource.open("r", encoding="utf-8") as f:
            frame = pd.read_csv(f)
        source = f"miabench/targets/{name_or_path}.csv"
    missing = [c for c in KEY if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing key column(s) {missing}")
    duplicated = frame.duplicated(list(KEY))
    if duplicated.any():
        rows = frame.loc[duplicated, list(KEY)].to_dict("records")
        raise ValueError(f"{source}: duplicate (victim, dataset) rows {rows}")
    return frame


def no_targets(columns: Iterable[str]) -> pd.DataFrame:
    """An empty targets table with the given columns, for tables of runs without published
    numbers (their ``_published`` and ``_delta`` columns stay empty)."""
    return pd.DataFrame(columns=[*KEY, *columns])


def _spec(target_column: str, spec: ColumnSpec) -> tuple[str, str]:
    if isinstance(spec, Mapping):
        if "attack" not in spec:
            raise ValueError(f"column {target_column!r}: spec {dict(spec)} needs an 'attack'")
        return str(spec["attack"]), str(spec.get("metric", "auc"))
    attack, metric = spec
    return str(attack), str(metric)


def _norm(value: Any) -> str:
    # Configs and paper transcriptions disagree on case and stray spaces, not on names.
    return str(value).strip().lower()


def _weights(attacks: Mapping[str, Any]) -> str | None:
    """Backbone weights named by the attacks' ``describe()`` (the membership-error attack)."""
    found = []
    for info in attacks.values():
        weights = (info.get("describe") or {}).get("weights") if isinstance(info, dict) else None
        if weights is not None and str(weights) not in found:
            found.append(str(weights))
    return ", ".join(found) if found else None


def _data_label(run: Mapping[str, Any]) -> str:
    """The data column: dataset name, where it was read, and declared membership (a split
    the user or the paper stated rather than one drawn at random, ``run.membership``)."""
    name = run.get("data_name", run["dataset"])
    details = [str(run["data_root"])] if run.get("data_root") else []
    if run.get("membership") == "declared":
        details.append("membership declared")
    return f"{name} ({'; '.join(details)})" if details else str(name)


def _utility(result: Mapping[str, Any]) -> Mapping[str, Any]:
    utility = result.get("utility") or {}
    # run_attack writes "nonmember"; docs/architecture.md spells it "nonmembers".
    return utility.get("nonmember") or utility.get("nonmembers") or {}


# -- seeds -------------------------------------------------------------------------------------


def _count(runs: Sequence[Mapping[str, Any]], attacks: Sequence[str], key: str) -> Any:
    """A per-attack count (``n_test_members``) of a setting: one value, or all seeds' values."""
    values = []
    for run in runs:
        found = [(run["attacks"].get(a) or {}).get(key) for a in attacks]
        found = [v for v in found if v is not None]
        if found:
            values.append(int(found[0]))
    unique = sorted(set(values))
    if not unique:
        return None
    return unique[0] if len(unique) == 1 else "/".join(map(str, unique))


def _column_specs(
    columns: Mapping[str, ColumnSpec], targets: pd.DataFrame
) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """Each table column's ``(attack, metric)``, and the columns measured only.

    Raises:
        ValueError: a published column (not ``published: false``) is not in ``targets``.
    """
    specs = {col: _spec(col, spec) for col, spec in columns.items()}
    # a column with `published: false` is measured only (no published number exists)
    unpublished = {
        col
        for col, spec in columns.items()
        if isinstance(spec, Mapping) and not spec.get("published", True)
    }
    absent = [col for col in specs if col not in targets.columns and col not in unpublished]
    if absent:
        raise ValueError(
            f"target column(s) {absent} not in the targets (columns: {list(targets.columns)})"
        )
    return specs, unpublished


def build_table(
    results: Sequence[Mapping[str, Any]],
    targets: pd.DataFrame,
    columns: Mapping[str, ColumnSpec],
    include_missing: bool = True,
    utility_metrics: Sequence[str] = UTILITY_METRICS,
    per_seed: bool = False,
    paired: Mapping[str, Mapping[str, str]] | None = None,
    multiple_testing: str = "holm",
) -> pd.DataFrame:
    """Join runs with published numbers, one row per setting (its seeds aggregated).

    Args:
        results: results.json dicts (see :func:`collect_results`).
        targets: published numbers (see :func:`load_targets`).
        columns: target column -> ``{"attack": name, "metric": key}`` (or an
            ``(attack, metric)`` pair), e.g.
            ``{"reconstruction_error_auc": {"attack": "reconstruction", "metric": "auc"}}``;
            ``published: false`` in a spec: a measured-only column, not in ``targets``.
        include_missing: also list published rows that no run reproduces (measured = NaN).
        utility_metrics: non-member utility values shown as ``nonmember_<metric>`` (e.g.
            ``map_50`` for a detector); pix2pix's PSNR, SSIM and L1 by default.
        per_seed: one row per run instead of one per setting.
        paired: column -> ``{"a": attack, "b": attack, "metric": "auc"}``: the paired
            bootstrap of a − b on each run's test samples (:func:`paired_attacks`), e.g. a
            new definition of an attack against the old one scored in the same run.
        multiple_testing: ``holm`` or ``bh``: the correction of the paired columns'
            p-values, over the whole frame.

    Returns:
        One row per setting (runs equal but for their seed, :func:`setting_key`; the newest
        result per setting and seed), sorted by the targets' row order, then victim, dataset,
        defense; settings without a published row last; and, when ``include_missing``, one
        per unreproduced published row. Columns: ``victim``, ``dataset``; per target column
        ``<col>_measured`` (mean over seeds) with ``_std``, ``_lo``, ``_hi``, ``_note``
        (:func:`estimate_columns`), ``<col>_published``, ``<col>_delta`` (mean −
        published); ``<attack>_tpr_at_1pct_fpr`` per attack with the same siblings;
        ``nonmember_<metric>`` (mean over seeds); then ``data``, ``image_size``,
        ``weights``, ``n_members``, ``n_nonmembers``, ``n_test_members``,
        ``n_test_nonmembers``, ``defense``, ``n_seeds``, ``seeds``. ``frame.attrs["grouping"]``
        holds :func:`describe_grouping` of ``results`` and ``frame.attrs["notes"]`` the correction's note, which
        :func:`write_table` lists (with the runs merged into each setting).

    Raises:
        ValueError: a target column is not in ``targets``.
    """
    specs, unpublished = _column_specs(columns, targets)
    published = {
        (_norm(row["victim"]), _norm(row["dataset"])): (order, row)
        for order, (_, row) in enumerate(targets.iterrows())
    }
    settings, _ = group_seeds(results)
    if per_seed:
        settings = [[run] for runs in settings for run in runs]

    rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    reproduced: set[tuple[str, str]] = set()
    for runs in settings:
        run = runs[0]["run"]
        key = (_norm(run["victim"]), _norm(run["dataset"]))
        order, target = published.get(key, (len(published), None))
        reproduced.add(key)
        row = _setting_row(runs, specs, unpublished, target, paired or {}, utility_metrics)
        sort_key = (order, *key, str(run.get("defense")), row["seeds"])
        rows.append((sort_key, row))

    if include_missing:
        for key, (order, target) in published.items():
            if key in reproduced:
                continue
            row = {"victim": target["victim"], "dataset": target["dataset"]}
            for col in specs:
                if col not in unpublished:
                    row[f"{col}_published"] = to_float(target[col])
            rows.append(((order, *key, "", ""), row))

    ordered = _column_order(specs, unpublished, paired or {}, utility_metrics)
    frame = pd.DataFrame([row for _, row in sorted(rows, key=lambda r: r[0])], columns=ordered)
    # Nullable integers keep counts as "48" rather than "48.0" when a row has no run.
    for col in ("image_size", "n_members", "n_nonmembers", "n_seeds"):
        frame[col] = pd.to_numeric(frame[col]).astype("Int64")
    for col in ("n_test_members", "n_test_nonmembers"):
        if frame[col].map(lambda v: v is None or isinstance(v, (int, float))).all():
            frame[col] = pd.to_numeric(frame[col]).astype("Int64")
    frame, n_tests = apply_multiple_testing(frame, multiple_testing)
    frame.attrs["grouping"] = describe_grouping(results)
    frame.attrs["notes"] = [multiple_testing_note(multiple_testing, n_tests)] if n_tests else []
    return frame


def _setting_row(
    runs: Sequence[Mapping[str, Any]],
    specs: Mapping[str, tuple[str, str]],
    unpublished: set[str],
    target: pd.Series | None,
    paired: Mapping[str, Mapping[str, str]],
    utility_metrics: Sequence[str],
) -> dict[str, Any]:
    """One table row: a setting's runs (its seeds) beside its published row ``target``."""
    run = runs[0]["run"]
    attacks = list(dict.fromkeys(attack for attack, _ in specs.values()))
    row: dict[str, Any] = {"victim": run["victim"], "dataset": run["dataset"]}
    for col, (attack, metric) in specs.items():
        estimate = seed_estimate(runs, attack, metric)
        row.update(estimate_columns(f"{col}_measured", estimate))
        if col in unpublished:
            continue
        reference = to_float(target[col]) if target is not None else math.nan
        row[f"{col}_published"] = reference
        row[f"{col}_delta"] = to_float(estimate.value) - reference
    for attack in attacks:
        row.update(
            estimate_columns(f"{attack}_{TPR_COLUMN}", seed_estimate(runs, attack, TPR_COLUMN))
        )
    for col, spec in paired.items():
        estimate = paired_attacks(runs, spec["a"], spec["b"], spec.get("metric", "auc"))
        row.update(paired_columns(col, estimate))
    for metric in utility_metrics:
        values = [to_float(_utility(r).get(metric)) for r in runs]
        row[f"nonmember_{metric}"] = float(np.mean(values))
    row.update(
        data=_data_label(run),
        image_size=run.get("image_size"),
        weights=_weights(runs[0].get("attacks") or {}),
        n_members=run.get("n_members"),
        n_nonmembers=run.get("n_nonmembers"),
        n_test_members=_count(runs, attacks, "n_test_members"),
        n_test_nonmembers=_count(runs, attacks, "n_test_nonmembers"),
        defense=run.get("defense"),
        n_seeds=len(runs),
        seeds=seeds_label(runs),
    )
    return row


def _column_order(
    specs: Mapping[str, tuple[str, str]],
    unpublished: set[str],
    paired: Mapping[str, Any],
    utility_metrics: Sequence[str],
) -> list[str]:
    """The columns of :func:`build_table`, in order (see its Returns)."""
    attacks = list(dict.fromkeys(attack for attack, _ in specs.values()))
    siblings = ("", *ESTIMATE_SIBLINGS)
    return [
        "victim",
        "dataset",
        *(
            name
            for col in specs
            for name in (
                *(f"{col}_measured{s}" for s in siblings),
                *(() if col in unpublished else (f"{col}_published", f"{col}_delta")),
            )
        ),
        *(f"{attack}_{TPR_COLUMN}{s}" for attack in attacks for s in siblings),
        *(f"{col}{s}" for col in paired for s in (*siblings, *TEST_SIBLINGS)),
        *(f"nonmember_{metric}" for metric in utility_metrics),
        "data",
        "image_size",
        "weights",
        "n_members",
        "n_nonmembers",
        "n_test_members",
        "n_test_nonmembers",
        "defense",
        "n_seeds",
        "seeds",
    ]


def write_table(
    frame: pd.DataFrame,
    out_dir: str | os.PathLike,
    name: str,
    title: str,
    notes: Sequence[str] = (),
    per_seed: pd.DataFrame | None = None,
) -> tuple[Path, Path]:
    """Write ``<name>.md`` (title, table, notes) and ``<name>.csv`` atomically.

    The CSV keeps every value, interval end and note in its own column; the Markdown shows
    each value with its interval in one cell (:func:`markdown_view`). A frame from
    :func:`build_table` also lists its correction's note and, with paths relative to
    ``out_dir``, the runs merged into each setting and those superseded.

    Args:
        frame: the table (see :func:`build_table`).
        out_dir: destination folder (created if needed).
        name: file stem.
        title: Markdown heading.
        notes: lines listed under the table, e.g. the command that regenerates it.
        per_seed: the same table with one row per run (``build_table(..., per_seed=True)``),
            written as ``<name>_per_seed.md`` / ``.csv``.

    Returns:
        ``(markdown_path, csv_path)``.
    """
    out_dir = Path(out_dir)
    legend = (
        f"{MISSING} = no value (no run, no published number, or not measured); "
        "delta = measured − published."
    )
    if per_seed is not None:
        title_per_seed = f"{title} (one row per seed)"
        extra = _frame_notes(per_seed, out_dir)
        _write(
            per_seed,
            out_dir,
            f"{name}_per_seed",
            title_per_seed,
            [*notes, *extra, INTERVAL_LEGEND, legend],
        )
        notes = [*notes, f"One row per seed: `{name}_per_seed.md` / `.csv`."]
    extra = _frame_notes(frame, out_dir)
    return _write(frame, out_dir, name, title, [*notes, *extra, INTERVAL_LEGEND, legend])


def _frame_notes(frame: pd.DataFrame, out_dir: Path) -> list[str]:
    """The notes a :func:`build_table` frame carries: its correction, and its runs."""
    grouping = frame.attrs.get("grouping")
    lines = grouping_lines(grouping, out_dir) if grouping else []
    return [*frame.attrs.get("notes", []), *lines]


def _write(
    frame: pd.DataFrame, out_dir: Path, name: str, title: str, notes: Sequence[str]
) -> tuple[Path, Path]:
    csv_path = atomic_write(out_dir / f"{name}.csv", lambda p: frame.to_csv(p, index=False))
    table = to_markdown(markdown_view(frame))
    lines = [f"# {title}", "", table, "", *(f"- {n}" for n in notes)]
    md_path = atomic_write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")
    return md_path, csv_path
