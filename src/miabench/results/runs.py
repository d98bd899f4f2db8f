"""Runs behind a table: reading results.json files and their CSVs, grouping one setting's
seeds.

Runs equal in what was run but for their seed (:func:`setting_key`) form one setting; the
estimates over those seeds that every table writer shows are in
:mod:`miabench.results.estimates`.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miabench.metrics.calibration import group_of
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
    "membership",
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
    # runs recorded before results said how membership came about were drawn or paper splits
    parts["membership"] = run.get("membership") or "drawn"
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


def seeds_label(runs: Sequence[Mapping[str, Any]]) -> str:
    """The seeds of a setting, e.g. ``"0,1,2"``."""
    return ",".join(str(r["run"].get("seed")) for r in runs)
