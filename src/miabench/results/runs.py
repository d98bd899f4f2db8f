"""Runs behind a table: reading results.json files, grouping one setting's seeds, and the
estimates over seeds every table writer shows.

Runs equal in what was run but for their seed (:func:`setting_key`) form one setting;
:func:`seed_estimate` averages a metric over its seeds with a t-interval over the per-seed
values (training randomness included, :mod:`miabench.metrics.seeds`); :func:`paired_difference`
tests a difference of two arms (over seeds, or by resampling samples where both arms are one
victim); :func:`apply_multiple_testing` adjusts all the p-values of one table together.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miabench.metrics.bootstrap import (
    Estimate,
    ScoredRows,
    replicate_means,
    roc_replicates,
)
from miabench.metrics.calibration import group_of
from miabench.metrics.multiplicity import adjust
from miabench.metrics.roc import ci_key, note_key, observable, roc_metrics, unobservable_note
from miabench.metrics.seeds import (
    ONE_SEED,
    P_VALUE_REPLICATES,
    SeedEstimate,
    over_seeds,
    per_seed_text,
    samples_test,
)
from miabench.utils.io import read_json

KEY = ("victim", "dataset")

#: the trained victim's key.json (its config), copied beside a run's record: a fresh clone
#: has no victims, and tables that read the victim's config (output dimension) need it
VICTIM_KEY = "victim_key.json"

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
#: override keys (and their sub-keys) that do not change what a run measured: where files
#: go, Hydra's own settings, which table a run feeds, logging and progress bars. Seeds are
#: left out separately (any key named ``seed`` or ending ``.seed``). ``debug`` is kept: a
#: debug config shortens training, so it changes the measurement.
IGNORED_OVERRIDES = (
    "paths",
    "hydra",
    "table",
    "logger",
    "extras",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
)
#: the seed of the tables' bootstrap replicates (a table rebuilt from the same runs is the same)
TABLE_SEED = 0
#: significance level of a table's ``*`` (on Holm/BH-adjusted p-values)
ALPHA = 0.05


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


def _ignored_override(key: str) -> bool:
    return _is_seed(key) or any(key == p or key.startswith(f"{p}.") for p in IGNORED_OVERRIDES)


def recorded_overrides(run: Mapping[str, Any]) -> list[str] | None:
    """The command-line overrides a run was launched with (``run.provenance.overrides``; an
    older results.json kept them as ``run.overrides``), or None when none are recorded."""
    overrides = (run.get("provenance") or {}).get("overrides")
    if overrides is None:
        overrides = run.get("overrides")
    return list(map(str, overrides)) if isinstance(overrides, (list, tuple)) else None


def measured_overrides(run: Mapping[str, Any]) -> list[str]:
    """The recorded overrides that shaped what was measured, sorted: without seeds and the
    keys of :data:`IGNORED_OVERRIDES` (``+``/``++``/``~`` prefixes are read through)."""
    kept = []
    for override in recorded_overrides(run) or []:
        key = override.split("=", 1)[0].lstrip("+~")
        if not _ignored_override(key):
            kept.append(override)
    return sorted(kept)


def setting_key(result: Mapping[str, Any]) -> str:
    """What a run measured, without its seed: runs with equal keys are seeds of one setting.

    The key is the run's victim, data (name, root, image size, direction), defense, split
    sizes, calibration grouping, every attack's ``describe()`` and the recorded overrides
    (:func:`measured_overrides`: e.g. ``trainer.max_epochs=1`` and ``=3`` are two settings),
    each without any seed entry. A results.json without recorded overrides is keyed on the
    rest, as before.
    """
    run = result["run"]
    parts: dict[str, Any] = {k: run.get(k) for k in SETTING_KEYS}
    parts["attacks"] = {
        name: _without_seeds((info or {}).get("describe") or {})
        for name, info in (result.get("attacks") or {}).items()
    }
    if recorded_overrides(run) is not None:
        parts["overrides"] = measured_overrides(run)
    return json.dumps(parts, sort_keys=True, default=str)


def group_seeds(
    results: Sequence[Mapping[str, Any]],
) -> tuple[list[list[Mapping[str, Any]]], list[str]]:
    """Results grouped by :func:`setting_key`, one result per seed, settings in input order.

    Two results of the same setting and seed (e.g. an old attack folder beside a rerun with a
    new folder key) keep the newer one by :func:`recorded_end` (the latest stage end time
    results.json records), then by path; never by file modification time, which a fresh
    clone does not keep.

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
            older, newer = sorted((previous, result), key=_recency)
            superseded.append(str(older.get("_path")))
            result = newer
        seeds[seed] = result
    ordered = [
        [seeds[k] for k in sorted(seeds, key=lambda s: (s is None, str(s).zfill(12)))]
        for seeds in groups.values()
    ]
    return ordered, superseded


def recorded_end(result: Mapping[str, Any]) -> str:
    """The latest ``finished`` time of the run's recorded stages (``run.provenance.stages``)
    as an ISO UTC string, or ``""`` when none is recorded."""
    stages = ((result["run"].get("provenance") or {}).get("stages")) or {}
    ends = []
    for stage in stages.values():
        finished = (stage or {}).get("finished") if isinstance(stage, Mapping) else None
        if finished:
            try:
                ends.append(datetime.fromisoformat(str(finished)))
            except ValueError:
                continue
    return max(ends).isoformat() if ends else ""


def _recency(result: Mapping[str, Any]) -> tuple[str, str]:
    return recorded_end(result), str(result.get("_path", ""))


def describe_grouping(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Which runs :func:`group_seeds` merged into each setting and which it superseded.

    Returns:
        ``{"settings": [[label, seeds, [paths]], ...], "superseded": [paths]}``: small and
        plain, so a frame can carry it in ``attrs`` to :func:`grouping_lines`.
    """
    groups, superseded = group_seeds(results)
    settings = []
    for runs in groups:
        run = runs[0]["run"]
        label = " / ".join(str(run.get(k)) for k in ("victim", "dataset", "defense"))
        extra = measured_overrides(run)
        if extra:
            label += f" ({' '.join(extra)})"
        settings.append([label, seeds_label(runs), [str(r.get("_path")) for r in runs]])
    return {"settings": settings, "superseded": list(superseded)}


def grouping_lines(grouping: Mapping[str, Any], out_dir: str | os.PathLike) -> list[str]:
    """Notes naming the runs merged into each setting and those superseded
    (:func:`describe_grouping`), with paths relative to the table's folder ``out_dir`` so
    that the notes are the same on every machine."""

    def rel(path: str) -> str:
        return Path(os.path.relpath(path, str(out_dir))).as_posix()

    lines = [
        f"Setting {label}: seeds {seeds} from " + ", ".join(f"`{rel(p)}`" for p in paths)
        for label, seeds, paths in grouping.get("settings", [])
    ]
    lines += [
        f"Superseded (same setting and seed, older by recorded end time, then path): `{rel(p)}`"
        for p in grouping.get("superseded", [])
    ]
    return lines


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
    """Attack ``a`` minus attack ``b`` scored in the same runs (one victim per seed), on each
    run's test samples: :func:`paired_difference` with ``same_victim`` (a paired bootstrap of
    the samples, averaged over the runs' seeds).

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
    return paired_difference(rows, metric, True, n_boot, level)


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
    """One attack metric over the seeds of a setting.

    One run: its value and single-run interval from results.json, which resamples the test
    samples only (no training randomness). Several: the mean over seeds with Student's
    t-interval over the per-seed values (:func:`miabench.metrics.seeds.over_seeds`), which
    counts how the victims trained; with 2 seeds it is very wide, honestly so. A metric null
    in any run (a TPR at an FPR too low for the test half) is null, with that run's note.

    Returns:
        A :class:`~miabench.metrics.seeds.SeedEstimate` (``per_seed`` holds each seed's
        value).
    """
    infos = [(r["attacks"].get(attack) or {}) for r in runs]
    if not any(metric in info for info in infos):
        return Estimate(None, None, None, None, len(runs))
    _, level = bootstrap_settings(runs)
    notes = [info.get(note_key(metric)) for info in infos if info.get(metric) is None]
    if notes:
        note = next((n for n in notes if n), None)
        return Estimate(None, None, None, None, len(runs), note)
    values = [to_float(info.get(metric)) for info in infos]
    if len(runs) == 1:
        one = recorded_estimate(infos[0], metric, level)
        return SeedEstimate(
            one.value, one.low, one.high, None, 1, one.note, per_seed=tuple(values), test=ONE_SEED
        )
    # AUCs and TPRs are proportions; other recorded metrics are left unbounded
    bounded = metric == "auc" or fpr_of(metric) is not None
    return over_seeds(values, level, bounds=(0.0, 1.0) if bounded else None)


def paired_difference(
    rows: Sequence[ScoredRows],
    metric: str,
    same_victim: bool,
    n_boot: int,
    level: float,
) -> Estimate:
    """The difference a − b of a metric (``auc`` or a TPR@FPR) of two scorers on the same
    test rows of each seed, with its interval and two-sided p-value.

    Two victims trained separately (a defense against the undefended victim): the paired
    t-test over the per-seed differences (training randomness counted; one seed: the value
    alone, untested). One victim (a post-hoc defense, or two attacks of one run): a paired
    bootstrap of the samples, one resample applied to both arms, with at least
    :data:`~miabench.metrics.seeds.P_VALUE_REPLICATES` replicates for the p-value.

    Args:
        rows: per seed, the test rows with two score arrays ``(a, b)``.
        metric: ``auc`` or ``tpr_at_<x>pct_fpr``.
        same_victim: both arms scored one victim per seed.
        n_boot: replicates of the runs' own intervals (raised to the p-value's minimum).
        level: coverage of the interval.
    """
    fpr = fpr_of(metric)
    fprs = () if fpr is None else (fpr,)
    fewest = min(r.n_nonmembers for r in rows)
    if fpr is not None and not observable(fpr, fewest):
        return Estimate(None, None, None, None, len(rows), unobservable_note(fpr, fewest))
    name = "auc" if fpr is None else metric
    points = [
        roc_metrics(r.scores[0], r.labels, fprs)[name]
        - roc_metrics(r.scores[1], r.labels, fprs)[name]
        for r in rows
    ]
    if not same_victim:
        return over_seeds(points, level, paired=True)

    def delta(run: ScoredRows, w: np.ndarray) -> dict[str, np.ndarray]:
        a = roc_replicates(run.scores[0], run.labels, w, fprs)[name]
        return {name: a - roc_replicates(run.scores[1], run.labels, w, fprs)[name]}

    if n_boot <= 0:
        return samples_test(points, None, level)
    reps = replicate_means(rows, delta, max(n_boot, P_VALUE_REPLICATES), TABLE_SEED)[name]
    return samples_test(points, reps, level)


def same_victim(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two runs scored the same trained victim: equal recorded ``run.victim_key`` (a
    post-hoc defense such as output truncation reuses the undefended victim)."""
    key = a["run"].get("victim_key")
    return key is not None and key == b["run"].get("victim_key")


#: the columns :func:`estimate_columns` writes beside a value, in order
ESTIMATE_SIBLINGS = ("_std", "_lo", "_hi", "_note", "_per_seed")
#: the further columns of a tested difference (:func:`paired_columns`)
TEST_SIBLINGS = ("_p", "_p_adj", "_test", "_sig")


def estimate_columns(name: str, estimate: Estimate) -> dict[str, Any]:
    """CSV columns of an estimate: ``name`` (value, the mean over seeds), ``name_std`` (over
    seeds; empty for one seed), ``name_lo``/``name_hi`` (interval), ``name_note``,
    ``name_per_seed`` (each seed's value, ``"0.9100;0.9300"``)."""
    return {
        name: to_float(estimate.value),
        f"{name}_std": to_float(estimate.std),
        f"{name}_lo": to_float(estimate.low),
        f"{name}_hi": to_float(estimate.high),
        f"{name}_note": estimate.note,
        f"{name}_per_seed": per_seed_text(getattr(estimate, "per_seed", ()) or ()),
    }


def paired_columns(name: str, estimate: Estimate) -> dict[str, Any]:
    """A tested difference's columns: :func:`estimate_columns`, ``<name>_p`` (raw two-sided
    p-value), ``_p_adj`` (filled by :func:`apply_multiple_testing`), ``_test`` (how it was
    tested) and ``_sig`` (raw p < 0.05 until adjusted, then adjusted p < 0.05)."""
    p = getattr(estimate, "p_value", None)
    return {
        **estimate_columns(name, estimate),
        f"{name}_p": to_float(p),
        f"{name}_p_adj": math.nan,
        f"{name}_test": getattr(estimate, "test", None),
        f"{name}_sig": p is not None and p < ALPHA,
    }


def apply_multiple_testing(
    frame: pd.DataFrame, method: str = "holm", alpha: float = ALPHA
) -> tuple[pd.DataFrame, int]:
    """Adjust every p-value of one table together (``<name>_p`` of each
    :func:`paired_columns` difference, every row) by Holm or Benjamini–Hochberg
    (:func:`miabench.metrics.multiplicity.adjust`): ``_p_adj`` is filled and ``_sig`` is
    adjusted p < ``alpha``.

    Returns:
        The adjusted copy and the number of tests (p-values present).
    """
    names = [
        c[: -len("_sig")] for c in frame.columns if c.endswith("_sig") and f"{c[:-4]}_p" in frame
    ]
    if not names:
        return frame, 0
    out = frame.copy()
    raw = np.concatenate(
        [pd.to_numeric(out[f"{n}_p"], errors="coerce").to_numpy(float) for n in names]
    )
    adjusted = adjust(raw, method).reshape(len(names), len(out))
    for n, values in zip(names, adjusted, strict=True):
        out[f"{n}_p_adj"] = values
        out[f"{n}_sig"] = values < alpha  # NaN (untested) compares False
    return out, int((~np.isnan(raw)).sum())


def multiple_testing_note(method: str, n_tests: int, alpha: float = ALPHA) -> str:
    """The Markdown note of a table's correction."""
    name = {"holm": "Holm", "bh": "Benjamini–Hochberg"}.get(method, method)
    return (
        f"* = significant at {alpha:g} after {name} correction over this table's {n_tests} "
        "tests (`table.multiple_testing`); the CSV keeps each raw p (`_p`) beside the "
        "adjusted one (`_p_adj`) and says how each was tested (`_test`)."
    )


def seeds_label(runs: Sequence[Mapping[str, Any]]) -> str:
    """The seeds of a setting, e.g. ``"0,1,2"``."""
    return ",".join(str(r["run"].get("seed")) for r in runs)
