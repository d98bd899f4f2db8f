"""Tables of measured results next to published numbers (Markdown for people, CSV for code).

A table has one row per results.json (a run: victim, dataset, defense, seed) joined on
``(victim, dataset)`` with a targets CSV from ``miabench/targets/``; for every published
column it shows the measured value, the published one and their difference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from miabench.utils.io import atomic_write, atomic_write_text, read_json

KEY = ("victim", "dataset")
# metrics.roc.tpr_key(0.01), spelled out: importing metrics.roc imports torch, and making a
# table must not (tests/test_startup.py checks the two agree).
#: Extra per-attack metric shown for every attack of the table (the low-FPR view).
TPR_COLUMN = "tpr_at_1pct_fpr"
UTILITY_METRICS = ("psnr", "ssim", "l1")
MISSING = "—"

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


def collect_results(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Read results.json files (schema in docs/architecture.md).

    Args:
        paths: results.json files.

    Returns:
        One dict per file, as written by ``run_attack``, plus ``"_path"`` (the file it came
        from, for error messages).

    Raises:
        FileNotFoundError: a file does not exist (the message names it).
        ValueError: a file is not JSON or lacks ``run.victim``, ``run.dataset`` or
            ``attacks`` (the message names it).
    """
    results = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"results file not found: {path}")
        data = read_json(path)
        run = data.get("run") if isinstance(data, dict) else None
        if not isinstance(run, dict) or not all(k in run for k in KEY):
            raise ValueError(f"{path}: malformed results, needs run.victim and run.dataset")
        if not isinstance(data.get("attacks"), dict):
            raise ValueError(f"{path}: malformed results, needs an 'attacks' mapping")
        results.append({**data, "_path": str(path)})
    return results


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


def _float(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _weights(attacks: Mapping[str, Any]) -> str | None:
    """Backbone weights named by the attacks' ``describe()`` (the membership-error attack)."""
    found = []
    for info in attacks.values():
        weights = (info.get("describe") or {}).get("weights") if isinstance(info, dict) else None
        if weights is not None and str(weights) not in found:
            found.append(str(weights))
    return ", ".join(found) if found else None


def _data_label(run: Mapping[str, Any]) -> str:
    name = run.get("data_name", run["dataset"])
    root = run.get("data_root")
    return f"{name} ({root})" if root else str(name)


def _utility(result: Mapping[str, Any]) -> Mapping[str, Any]:
    utility = result.get("utility") or {}
    # run_attack writes "nonmember"; docs/architecture.md spells it "nonmembers".
    return utility.get("nonmember") or utility.get("nonmembers") or {}


def build_table(
    results: Sequence[Mapping[str, Any]],
    targets: pd.DataFrame,
    columns: Mapping[str, ColumnSpec],
    include_missing: bool = True,
    utility_metrics: Sequence[str] = UTILITY_METRICS,
) -> pd.DataFrame:
    """Join runs with published numbers.

    Args:
        results: results.json dicts (see :func:`collect_results`).
        targets: published numbers (see :func:`load_targets`).
        columns: target column -> ``{"attack": name, "metric": key}`` (or an
            ``(attack, metric)`` pair), e.g.
            ``{"reconstruction_error_auc": {"attack": "reconstruction", "metric": "auc"}}``.
        include_missing: also list published rows that no run reproduces (measured = NaN).
        utility_metrics: non-member utility values shown as ``nonmember_<metric>`` (e.g.
            ``map_50`` for a detector); pix2pix's PSNR, SSIM and L1 by default.

    Returns:
        One row per run (sorted by the targets' row order, then victim, dataset, defense,
        seed; runs without a published row last) and, when ``include_missing``, one per
        unreproduced published row. Columns: ``victim``, ``dataset``; per target column
        ``<col>_measured``, ``<col>_published``, ``<col>_delta`` (measured − published, NaN
        when either is missing); ``<attack>_tpr_at_1pct_fpr`` per attack;
        ``nonmember_psnr``/``_ssim``/``_l1``; then ``data``, ``image_size``, ``weights``,
        ``n_members``, ``n_nonmembers``, ``defense``, ``seed``.

    Raises:
        ValueError: a target column is not in ``targets``.
    """
    specs = {col: _spec(col, spec) for col, spec in columns.items()}
    absent = [col for col in specs if col not in targets.columns]
    if absent:
        raise ValueError(
            f"target column(s) {absent} not in the targets (columns: {list(targets.columns)})"
        )
    attacks = list(dict.fromkeys(attack for attack, _ in specs.values()))
    published = {
        (_norm(row["victim"]), _norm(row["dataset"])): (order, row)
        for order, (_, row) in enumerate(targets.iterrows())
    }

    rows: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    reproduced: set[tuple[str, str]] = set()
    for result in results:
        run = result["run"]
        key = (_norm(run["victim"]), _norm(run["dataset"]))
        order, target = published.get(key, (len(published), None))
        reproduced.add(key)
        measured = result.get("attacks") or {}
        utility = _utility(result)
        row: dict[str, Any] = {"victim": run["victim"], "dataset": run["dataset"]}
        for col, (attack, metric) in specs.items():
            value = _float((measured.get(attack) or {}).get(metric))
            reference = _float(target[col]) if target is not None else math.nan
            row[f"{col}_measured"] = value
            row[f"{col}_published"] = reference
            row[f"{col}_delta"] = value - reference
        for attack in attacks:
            row[f"{attack}_{TPR_COLUMN}"] = _float((measured.get(attack) or {}).get(TPR_COLUMN))
        for metric in utility_metrics:
            row[f"nonmember_{metric}"] = _float(utility.get(metric))
        row.update(
            data=_data_label(run),
            image_size=run.get("image_size"),
            weights=_weights(measured),
            n_members=run.get("n_members"),
            n_nonmembers=run.get("n_nonmembers"),
            defense=run.get("defense"),
            seed=run.get("seed"),
        )
        sort_key = (order, *key, str(run.get("defense")), str(run.get("seed")))
        rows.append((sort_key, row))

    if include_missing:
        for key, (order, target) in published.items():
            if key in reproduced:
                continue
            row = {"victim": target["victim"], "dataset": target["dataset"]}
            for col in specs:
                row[f"{col}_published"] = _float(target[col])
            rows.append(((order, *key, "", ""), row))

    ordered = [
        "victim",
        "dataset",
        *(f"{col}_{part}" for col in specs for part in ("measured", "published", "delta")),
        *(f"{attack}_{TPR_COLUMN}" for attack in attacks),
        *(f"nonmember_{metric}" for metric in utility_metrics),
        "data",
        "image_size",
        "weights",
        "n_members",
        "n_nonmembers",
        "defense",
        "seed",
    ]
    frame = pd.DataFrame([row for _, row in sorted(rows, key=lambda r: r[0])], columns=ordered)
    # Nullable integers keep counts as "48" rather than "48.0" when a row has no run.
    for col in ("image_size", "n_members", "n_nonmembers", "seed"):
        frame[col] = pd.to_numeric(frame[col]).astype("Int64")
    return frame


def _cell(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(frame: pd.DataFrame) -> str:
    """GitHub Markdown table: floats to 4 decimals, missing values as "—", numbers right.

    Written here rather than with ``DataFrame.to_markdown`` because that needs the
    ``tabulate`` package, which is not a dependency and is not worth adding for one table.
    """
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    header = "| " + " | ".join(_cell(str(c)) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if num else "---" for num in numeric) + "|"
    body = [
        "| " + " | ".join(_cell(v) for v in row) + " |"
        for row in frame.astype(object).itertuples(index=False, name=None)
    ]
    return "\n".join([header, rule, *body])


def write_table(
    frame: pd.DataFrame,
    out_dir: str | os.PathLike,
    name: str,
    title: str,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``<name>.md`` (title, table, notes) and ``<name>.csv`` atomically.

    Args:
        frame: the table (see :func:`build_table`).
        out_dir: destination folder (created if needed).
        name: file stem.
        title: Markdown heading.
        notes: lines listed under the table, e.g. the command that regenerates it.

    Returns:
        ``(markdown_path, csv_path)``.
    """
    out_dir = Path(out_dir)
    csv_path = atomic_write(out_dir / f"{name}.csv", lambda p: frame.to_csv(p, index=False))
    legend = (
        f"{MISSING} = no value (no run, no published number, or not measured); "
        "delta = measured − published."
    )
    lines = [f"# {title}", "", to_markdown(frame), "", *(f"- {n}" for n in [*notes, legend])]
    md_path = atomic_write_text(out_dir / f"{name}.md", "\n".join(lines) + "\n")
    return md_path, csv_path
