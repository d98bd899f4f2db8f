"""Embedded datasets are built once into a folder and reused: the completion marker.

Builders render into a temporary folder beside ``out_root`` and move it into place with the
marker written last (:func:`build_once`), so no reader ever sees a half build, even from a
killed job. Jobs started together do not build twice: ``pipeline.train.locate_victim`` holds
the data's lock (``<cache>/locks/data/…``) around ``prepare_data``, so one job builds and the
others find the marker.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from miabench.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

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


def build_once(
    out_root: Path, params: dict[str, Any], what: str, write: Callable[[Path], dict[str, Any]]
) -> Path:
    """Build ``what`` into ``out_root`` unless a finished build with ``params`` is there.

    ``write(folder)`` renders everything into a fresh temporary folder beside ``out_root``
    and returns what the marker records besides ``params`` (counts); the marker is written
    last and the folder moved into place in one rename. A job that finds the same build
    finished meanwhile by another (the rename fails) keeps that one.

    Returns:
        ``out_root``.

    Raises:
        FileExistsError, ValueError: as :func:`completed_build`.
    """
    if completed_build(out_root, params, what):
        log.info("%s already built in %s", what, out_root)
        return out_root
    out_root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_root.name}.", suffix=".tmp", dir=out_root.parent))
    try:
        recorded = write(tmp)
        atomic_write_json(tmp / COMPLETE_MARKER, {"params": params, **recorded})
        try:
            os.replace(tmp, out_root)
        except OSError:
            # Another process may have finished the same build meanwhile; that is fine.
            if not completed_build(out_root, params, what):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s written to %s (%s)", what, out_root, recorded)
    return out_root
