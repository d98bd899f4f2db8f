"""Embedded datasets are built once into a folder and reused: the completion marker.

Builders render into a temporary folder beside ``out_root`` and move it into place with the
marker written last, so no reader ever sees a half build, even from a killed job. Jobs
started together do not build twice: ``pipeline.train.locate_victim`` holds the data's lock
(``<cache>/locks/data/…``) around ``prepare_data``, so one job builds and the others find the
marker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from miabench.utils.io import read_json

#: Written last into a finished build, with the parameters it was built with.
COMPLETE_MARKER = ".complete.json"


def completed_build(out_root: Path, params: dict[str, Any], what: str) -> bool:
    """True if ``out_root`` is a finished ``what`` build made with ``params``.

    Returns False when there is nothing there yet (or an empty folder), so the caller builds.

    Raises:
        FileExistsError: ``out_root`` holds something that is not a finished build (no marker).
        ValueError: ``out_root`` was built with other parameters.
    """
    if not out_root.exists():
        return False
    marker = out_root / COMPLETE_MARKER
    if not marker.is_file():
        if out_root.is_dir() and not any(out_root.iterdir()):
            return False
        raise FileExistsError(
            f"{out_root} exists but is not a finished {what} build (no {COMPLETE_MARKER}); "
            "remove it or choose another out_root"
        )
    built = read_json(marker).get("params")
    if built != params:
        raise ValueError(
            f"{out_root} was built with {built}, not {params}; remove it or choose another out_root"
        )
    return True
