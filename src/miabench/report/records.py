"""Reading one attack folder for a report: its results.json and scores.csv, checked.

An attack folder may come from another machine or a download, so nothing in it is trusted
until checked: results.json must have the layout :mod:`miabench.pipeline.record` writes
(``run``, ``attacks`` with AUC and test counts), scores.csv the columns the attack stage
writes, and the scores must give the AUC and test counts that results.json records
(a scores.csv from another run, or edited by hand, is refused, naming both files).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from miabench.metrics.roc import roc_metrics
from miabench.results.runs import collect_results
from miabench.utils.io import read_verified

RESULTS = "results.json"
SCORES = "scores.csv"
#: columns every scores.csv has besides one ``<attack>.score`` per attack
SCORE_COLUMNS = ("sample_id", "label", "split")
#: recorded and recomputed AUCs must agree this closely (float noise of the CSV round trip)
AUC_TOLERANCE = 1e-6


class ReportError(ValueError):
    """An attack folder or table cannot be reported; the message names the file and what
    was expected."""


@dataclass
class AttackRun:
    """One attack folder: its checked results.json and test-half scores.

    Attributes:
        folder: the attack folder.
        result: results.json as read (with ``_path``).
        scores: every row of scores.csv, or None when the folder has none.
    """

    folder: Path
    result: dict[str, Any]
    scores: pd.DataFrame | None

    @property
    def attacks(self) -> dict[str, dict[str, Any]]:
        return self.result["attacks"]

    @property
    def run(self) -> dict[str, Any]:
        return self.result["run"]

    def test_rows(self) -> pd.DataFrame | None:
        """The test half of scores.csv (every row when the run had no calibration half)."""
        if self.scores is None:
            return None
        test = self.scores["split"] == "test"
        return self.scores[test] if test.any() else self.scores


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_result(path: Path) -> dict[str, Any]:
    """results.json at ``path``, checked against the layout the attack stage writes.

    Raises:
        ReportError: missing, not JSON, or lacking ``run``/``attacks`` or an attack's
            ``auc``, ``n_test_members`` or ``n_test_nonmembers`` (the message names the file).
    """
    if not path.is_file():
        raise ReportError(f"{path}: no such file (an attack folder holds {RESULTS})")
    try:
        result = collect_results([path])[0]
    except ValueError as err:  # not JSON, or no run.victim / run.dataset / attacks
        raise ReportError(str(err)) from err
    if not result["attacks"]:
        raise ReportError(f"{path}: 'attacks' is empty; expected one entry per attack")
    for name, info in result["attacks"].items():
        if not isinstance(info, Mapping):
            raise ReportError(f"{path}: attacks.{name} is not a mapping of metrics")
        for key in ("auc", "n_test_members", "n_test_nonmembers"):
            if not _number(info.get(key)):
                raise ReportError(
                    f"{path}: attacks.{name}.{key} is {info.get(key)!r}; expected a number "
                    "(a reference-model run's target metrics are reported by its own table)"
                )
    return result


def read_scores(path: Path, result: Mapping[str, Any], results_path: Path) -> pd.DataFrame:
    """scores.csv at ``path``, checked: columns, labels, finite scores, and agreement with
    the AUC and test counts ``result`` records.

    Raises:
        ReportError: naming ``path`` (and ``results_path`` when the two disagree).
    """
    try:
        frame = pd.read_csv(read_verified(path))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not a readable CSV ({err})") from err
    columns = [*SCORE_COLUMNS, *(f"{a}.score" for a in result["attacks"])]
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ReportError(f"{path}: lacks column(s) {missing}; expected {columns}")
    if not frame["label"].isin([0, 1]).all():
        raise ReportError(f"{path}: column 'label' must hold 1 (member) or 0 (non-member)")
    test = frame[frame["split"] == "test"] if (frame["split"] == "test").any() else frame
    labels = test["label"].to_numpy(dtype=int)
    for name, info in result["attacks"].items():
        scores = pd.to_numeric(test[f"{name}.score"], errors="coerce").to_numpy(dtype=float)
        if np.isnan(scores).any():
            raise ReportError(f"{path}: column '{name}.score' has empty or non-numeric values")
        counts = (int(labels.sum()), int(len(labels) - labels.sum()))
        recorded = (int(info["n_test_members"]), int(info["n_test_nonmembers"]))
        if counts != recorded:
            raise ReportError(
                f"{path}: {counts[0]} members and {counts[1]} non-members in the test half, "
                f"but {results_path} records {recorded[0]} and {recorded[1]} for {name!r}: "
                "the two files are not from one run"
            )
        auc = roc_metrics(scores, labels, fprs=())["auc"]
        if abs(auc - float(info["auc"])) > AUC_TOLERANCE:
            raise ReportError(
                f"{path}: the scores of {name!r} give AUC {auc:.6f}, but {results_path} "
                f"records {float(info['auc']):.6f}: the two files are not from one run "
                "(or the scores were rescored without `python -m miabench.rescore`)"
            )
    return frame


def read_attack_folder(folder: str | Path) -> AttackRun:
    """The checked records of the attack folder ``folder`` (or of the folder of a
    results.json given directly).

    Raises:
        ReportError: naming the file that is missing or malformed.
    """
    folder = Path(folder)
    if folder.is_file() and folder.name == RESULTS:
        folder = folder.parent
    if not folder.is_dir():
        raise ReportError(f"{folder}: no such attack folder (expected a folder holding {RESULTS})")
    results_path = folder / RESULTS
    result = read_result(results_path)
    scores_path = folder / SCORES
    scores = read_scores(scores_path, result, results_path) if scores_path.is_file() else None
    return AttackRun(folder, result, scores)


def find_hashes(obj: Any, prefix: str = "") -> dict[str, str]:
    """Every ``*sha256*`` entry of a nested record (weights, checkpoints, manifests), by
    its dotted key."""
    found: dict[str, str] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if "sha256" in str(key) and isinstance(value, str):
                found[name] = value
            else:
                found.update(find_hashes(value, f"{name}."))
    return found
