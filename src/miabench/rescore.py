"""Recompute a finished run's attack metrics from its per-sample scores with today's code.

    python -m miabench.rescore results/embedded_pix2pix/runs/*/results.json
    python -m miabench.rescore results/embedded_pix2pix/runs --check   # only say what differs

A run's ``scores.csv`` holds every attack's per-sample score, the sample's role and label and
the calibration/test half it fell in. The metrics in ``results.json`` (AUC, TPRs at low FPR,
the calibrated threshold's accuracy, every interval) are a pure function of those columns and
of the run's evaluation settings (FPRs, bootstrap replicates, level, seed, resampling unit),
all recorded in the file. When the statistics change (a new interval method, a stricter rule
for TPR at low FPR), this recomputes them without the victim, which a fresh clone does not
have: the scores stay as the run produced them (``run.provenance`` names that commit), and
``run.rescored`` records the commit, time and command that recomputed the metrics.

Reference-model runs (``results.json`` with ``target`` / ``leave_one_out``) score pairs of a
samples × models matrix and are left alone: rerun their attack stage instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from miabench.metrics.calibration import group_of
from miabench.pipeline.record import held_out_metrics
from miabench.results.estimates import fpr_of
from miabench.utils.io import atomic_write_json, read_json
from miabench.utils.provenance import now_iso, process_git_state

log = logging.getLogger("miabench.rescore")

#: entries of an attack's metrics that are not recomputed from the scores
KEPT = ("describe", "accuracy_at_decision")


class RescoreError(ValueError):
    """A run cannot be rescored (the message names the file and what was expected)."""


def _fprs(info: Mapping[str, Any]) -> tuple[float, ...]:
    """The FPRs whose TPRs the run recorded, highest first."""
    return tuple(sorted((f for f in map(fpr_of, info) if f is not None), reverse=True))


def _evaluation(result: Mapping[str, Any], info: Mapping[str, Any]) -> Any:
    """The evaluation settings the run's metrics were computed with, as a config."""
    return OmegaConf.create(
        {
            "seed": result["run"].get("seed", 0),
            "evaluation": {
                "fprs": list(_fprs(info)),
                "bootstrap": int(info.get("n_bootstrap") or 0),
                "ci_level": float(info.get("ci_level") or 0.95),
            },
        }
    )


def rescore_result(path: Path) -> dict[str, Any]:
    """The results.json at ``path`` with every attack's metrics recomputed from the
    ``scores.csv`` beside it (nothing is written).

    Raises:
        RescoreError: no scores.csv, a missing column, or a reference-model run.
    """
    result = read_json(path)
    if "leave_one_out" in result or "target" in result:
        raise RescoreError(f"{path}: a reference-model run; rerun its attack stage instead")
    scores_path = path.parent / "scores.csv"
    if not scores_path.is_file():
        raise RescoreError(f"{path}: no scores.csv beside it (the per-sample scores)")
    frame = pd.read_csv(scores_path)
    missing = {"sample_id", "label", "split"} - set(frame)
    if missing:
        raise RescoreError(f"{scores_path}: lacks column(s) {sorted(missing)}")
    labels = frame["label"].to_numpy().astype(int)
    is_calibration = (frame["split"] == "calibration").to_numpy()
    test = ~is_calibration if is_calibration.any() else np.ones_like(is_calibration)
    attacks = {}
    for name, info in result["attacks"].items():
        column = f"{name}.score"
        if column not in frame:
            raise RescoreError(f"{scores_path}: no column {column!r} for attack {name!r}")
        groups = None
        if info.get("bootstrap_unit") == "group":
            groups = frame["sample_id"].map(group_of).to_numpy()[test]
        metrics = held_out_metrics(
            _evaluation(result, info),
            frame[column].to_numpy(dtype=np.float64),
            labels,
            is_calibration,
            groups,
        )
        metrics.update({k: info[k] for k in KEPT if k in info})
        attacks[name] = metrics
    run = dict(result["run"])
    run["rescored"] = {
        "git": process_git_state(),
        "at": now_iso(),
        "command": "python -m miabench.rescore",
        "scores_sha256_from": "scores.csv",
    }
    return {**result, "run": run, "attacks": attacks}


def result_files(targets: Iterable[str]) -> list[Path]:
    """results.json files named directly or found under folders, sorted."""
    found: set[Path] = set()
    for target in map(Path, targets):
        if target.is_dir():
            found.update(target.rglob("results.json"))
        elif target.is_file():
            found.add(target)
        else:
            raise FileNotFoundError(f"rescore: no file or folder {target}")
    return sorted(found)


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changed = []
    for name, metrics in new["attacks"].items():
        before = old["attacks"].get(name, {})
        for key, value in metrics.items():
            if before.get(key) != value:
                changed.append(f"{name}.{key}")
    return changed


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status (1 with a one-line error on failure)."""
    parser = argparse.ArgumentParser(
        prog="python -m miabench.rescore",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("targets", nargs="+", help="results.json files or folders holding them")
    parser.add_argument("--check", action="store_true", help="report changes, write nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[rescore] %(message)s")
    try:
        paths = result_files(args.targets)
        if not paths:
            raise FileNotFoundError(f"rescore: no results.json under {args.targets}")
        for path in paths:
            try:
                new = rescore_result(path)
            except RescoreError as err:
                log.info("skipped: %s", err)
                continue
            changed = _changed(read_json(path), new)
            log.info("%s: %d metric(s) changed", path, len(changed))
            if not args.check:
                atomic_write_json(path, new)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
