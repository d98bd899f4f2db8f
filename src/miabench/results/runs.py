"""Runs behind a table: reading results.json files, grouping one setting's seeds, and the
estimates over seeds (mean, std over seeds, pooled interval) every table writer shows.

Runs equal but for their seed (:func:`setting_key`) form one setting; :func:`seed_estimate`
averages a metric over its seeds with the pooled interval recomputed from each run's
``scores.csv`` (:func:`held_out_scores`), and :func:`paired_attacks` gives the paired
bootstrap of two attacks scored in the same runs.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miabench.metrics.bootstrap import Estimate, ScoredRows, paired_roc, pooled_roc
from miabench.metrics.calibration import group_of
from miabench.metrics.roc import ci_key, note_key
from miabench.utils.io import read_json

KEY = ("victim", "dataset")

#: run fields that make a setting (with the attacks' settings); everything but the seed
SETTING_KEYS = (
    "victim",
    "dataset",
    "data_name",
    "data_root",
    "image_size",
    "direction",
    "defense",
    "calibration_by_group",
    "n_members",
    "n_nonmembers",
)


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


def to_float(value: Any) -> float:
    """A recorded number as a float; NaN for None or anything that is not a number."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _is_seed(name: str) -> bool:
    return name == "seed" or name.endswith(".seed")


def _without_seeds(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_seeds(v) for k, v in value.items() if not _is_seed(str(k))}
    return value


def setting_key(result: Mapping[str, Any]) -> str:
    """What a run measured, without its seed: runs with equal keys are seeds of one setting.

    The key is the run's victim, data (name, root, image size, direction), defense, split
    sizes, calibration grouping, every attack's ``describe()`` and, when results.json records
    them, the run's overrides, each without any ``seed`` entry.
    """
    run = result["run"]
    parts: dict[str, Any] = {k: run.get(k) for k in SETTING_KEYS}
    parts["attacks"] = {
        name: _without_seeds((info or {}).get("describe") or {})
        for name, info in (result.get("attacks") or {}).items()
    }
    overrides = run.get("overrides")
    if isinstance(overrides, (list, tuple)):
        parts["overrides"] = sorted(
            str(o) for o in overrides if not _is_seed(str(o).split("=", 1)[0].lstrip("+~"))
        )
    return json.dumps(parts, sort_keys=True, default=str)


def group_seeds(
    results: Sequence[Mapping[str, Any]],
) -> tuple[list[list[Mapping[str, Any]]], list[str]]:
    """Results grouped by :func:`setting_key`, one result per seed, settings in input order.

    Two results of the same setting and seed (e.g. an old attack folder beside a rerun with a
    new folder key) keep the newer file (by modification time).

    Returns:
        The groups (each sorted by seed) and the paths of the superseded results.
    """
    groups: dict[str, dict[Any, Mapping[str, Any]]] = {}
    superseded: list[str] = []
    for result in results:
        seeds = groups.setdefault(setting_key(result), {})
        seed = result["run"].get("seed")
        previous = seeds.get(seed)
        if previous is not None:
            older, newer = sorted((previous, result), key=_mtime)
            superseded.append(str(older.get("_path")))
            result = newer
        seeds[seed] = result
    ordered = [
        [seeds[k] for k in sorted(seeds, key=lambda s: (s is None, str(s).zfill(12)))]
        for seeds in groups.values()
    ]
    return ordered, superseded


def _mtime(result: Mapping[str, Any]) -> float:
    path = result.get("_path")
    return os.path.getmtime(path) if path and os.path.exists(path) else 0.0


def run_file(result: Mapping[str, Any], name: str) -> Path | None:
    """A file written beside a run's results.json (``scores.csv``, ``utility.csv``), if any."""
    path = result.get("_path")
    if not path:
        return None
    candidate = Path(path).parent / name
    return candidate if candidate.is_file() else None


def result_paths(patterns: list[str]) -> list[Path]:
    """Expand the table's result patterns (globs or plain paths), sorted, deduplicated."""
    paths: set[Path] = set()
    for pattern in patterns:
        matches = glob.glob(str(pattern))
        if not matches and not glob.has_magic(str(pattern)):
            raise FileNotFoundError(f"table.results: no results file at {pattern}")
        paths.update(Path(m) for m in matches)
    return sorted(paths)


def read_run_csv(path: Path) -> pd.DataFrame:
    """A run's CSV, read once per process and version of the file (a table reads each
    scores.csv for every attack and metric)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CSV_CACHE:
        _CSV_CACHE[key] = pd.read_csv(path)
    return _CSV_CACHE[key]


_CSV_CACHE: dict[tuple[str, int, int], pd.DataFrame] = {}


def held_out_scores(
    result: Mapping[str, Any], attacks: Sequence[str]
) -> tuple[pd.DataFrame, np.ndarray | None] | None:
    """Test rows of a run's ``scores.csv``: sample_id, label and ``<attack>.score`` columns,
    with the groups its intervals were resampled by (None when by sample), or None when the
    run has no scores.csv or lacks an attack's scores."""
    path = run_file(result, "scores.csv")
    if path is None:
        return None
    frame = read_run_csv(path)
    columns = list(dict.fromkeys(f"{a}.score" for a in attacks))
    if any(c not in frame for c in columns) or not {"label", "split"} <= set(frame):
        return None
    test = frame[frame["split"] == "test"] if (frame["split"] == "test").any() else frame
    test = test[["sample_id", "label", *columns]].reset_index(drop=True)
    return test, _groups(result, test)


def _groups(result: Mapping[str, Any], test: pd.DataFrame) -> np.ndarray | None:
    units = {info.get("bootstrap_unit") for info in result["attacks"].values() if info}
    return test["sample_id"].map(group_of).to_numpy() if "group" in units else None


def paired_attacks(
    runs: Sequence[Mapping[str, Any]], a: str, b: str, metric: str = "auc"
) -> Estimate:
    """Paired bootstrap of attack ``a`` minus attack ``b`` scored in the same runs, on each
    run's test samples (one resample applied to both), averaged over the runs' seeds.

    Returns an empty estimate with a note when a run has no scores.csv with both attacks.
    """
    rows = []
    for result in runs:
        found = held_out_scores(result, [a, b])
        if found is None:
            return Estimate(None, None, None, note=f"no scores.csv with {a} and {b}")
        test, groups = found
        rows.append(
            ScoredRows.of(test["label"], test[f"{a}.score"], test[f"{b}.score"], groups=groups)
        )
    n_boot, level = bootstrap_settings(runs)
    fpr = fpr_of(metric)
    return paired_roc(rows, fprs=(fpr,) if fpr else (), n_boot=n_boot, level=level)[metric]


def bootstrap_settings(runs: Sequence[Mapping[str, Any]]) -> tuple[int, float]:
    """Replicates and level of the runs' own intervals (1000 and 0.95 for older results)."""
    infos = [i for r in runs for i in r["attacks"].values() if isinstance(i, Mapping)]
    n_boot = max((int(i.get("n_bootstrap") or 0) for i in infos), default=0) or 1000
    level = next((float(i["ci_level"]) for i in infos if i.get("ci_level")), 0.95)
    return n_boot, level


def fpr_of(metric: str) -> float | None:
    match = re.fullmatch(r"tpr_at_(.+)pct_fpr", metric)
    return float(match.group(1)) / 100 if match else None


def recorded_estimate(info: Mapping[str, Any], metric: str, level: float | None = None) -> Estimate:
    """A metric as one results.json entry records it: its value, its interval at ``level``
    (the entry's own ``ci_level`` by default) and, where the value is null, the note why."""
    level = info.get("ci_level", 0.95) if level is None else level
    low, high = info.get(ci_key(metric, level)) or (None, None)
    value = info.get(metric)
    return Estimate(
        None if value is None else float(value), low, high, None, 1, info.get(note_key(metric))
    )


def seed_estimate(runs: Sequence[Mapping[str, Any]], attack: str, metric: str) -> Estimate:
    """One attack metric over the seeds of a setting (see :func:`pooled_roc`).

    One run: its value and interval from results.json. Several: mean ± std over seeds and
    the pooled interval, recomputed from each run's ``scores.csv`` (without one, no
    interval). A metric null in any run (a TPR at an FPR too low for the test half) is null,
    with that run's note.
    """
    infos = [(r["attacks"].get(attack) or {}) for r in runs]
    if not any(metric in info for info in infos):
        return Estimate(None, None, None, None, len(runs))
    n_boot, level = bootstrap_settings(runs)
    notes = [info.get(note_key(metric)) for info in infos if info.get(metric) is None]
    if notes:
        note = next((n for n in notes if n), None)
        return Estimate(None, None, None, None, len(runs), note)
    values = [to_float(info.get(metric)) for info in infos]
    if len(runs) == 1:
        return recorded_estimate(infos[0], metric, level)
    std = float(np.std(values, ddof=1))
    fpr = fpr_of(metric)
    rows = [held_out_scores(r, [attack]) for r in runs]
    if (metric != "auc" and fpr is None) or any(r is None for r in rows):
        return Estimate(float(np.mean(values)), None, None, std, len(runs))
    scored = [
        ScoredRows.of(test["label"], test[f"{attack}.score"], groups=groups)
        for test, groups in rows
    ]
    pooled = pooled_roc(scored, fprs=() if fpr is None else (fpr,), n_boot=n_boot, level=level)
    return replace(pooled["auc" if fpr is None else metric], std=std)


def estimate_columns(name: str, estimate: Estimate) -> dict[str, Any]:
    """CSV columns of an estimate: ``name`` (value, the mean over seeds), ``name_std`` (over
    seeds; empty for one seed), ``name_lo``/``name_hi`` (interval), ``name_note``."""
    return {
        name: to_float(estimate.value),
        f"{name}_std": to_float(estimate.std),
        f"{name}_lo": to_float(estimate.low),
        f"{name}_hi": to_float(estimate.high),
        f"{name}_note": estimate.note,
    }


def paired_columns(name: str, estimate: Estimate) -> dict[str, Any]:
    """A paired difference's columns: :func:`estimate_columns` and ``<name>_sig`` (its
    interval excludes 0)."""
    return {**estimate_columns(name, estimate), f"{name}_sig": estimate.significant}


def seeds_label(runs: Sequence[Mapping[str, Any]]) -> str:
    """The seeds of a setting, e.g. ``"0,1,2"``."""
    return ",".join(str(r["run"].get("seed")) for r in runs)
