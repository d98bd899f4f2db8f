"""One table per sweep: jobs record their results, a Hydra callback writes the table once.

Without this, every job of a multirun rewrote the comparison table from whatever results it
found, and under SLURM the last job to finish need not have seen all of them. Now:

1. :class:`TableCallback` (``hydra.callbacks`` in ``conf/hydra/default.yaml``) gives the sweep
   an id when it starts (``MIABENCH_SWEEP_ID`` in the environment, which local jobs share and
   SLURM/submitit jobs inherit);
2. each benchmark job of that sweep writes ``miabench_job.json`` (the sweep id and its
   ``results.json``) into its Hydra job folder and writes no table;
3. when the sweep ends, the callback collects the job records of *this* sweep from the sweep
   folder and writes the table from exactly those results.

The table goes to ``results/`` only when the sweep is the table's documented command (see
:func:`miabench.pipeline.table.route_table`); ``python -m miabench.make_table`` rebuilds any
table from its committed run records at any time.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from miabench.utils.io import atomic_write_json, read_json
from miabench.utils.provenance import now_iso

log = logging.getLogger(__name__)

SWEEP_ENV = "MIABENCH_SWEEP_ID"
JOB_RECORD = "miabench_job.json"


def in_sweep() -> str | None:
    """The id of the sweep this job belongs to, or None outside a table-writing sweep."""
    return os.environ.get(SWEEP_ENV) or None


def record_job(results: Path, job_dir: str | Path) -> Path:
    """Write this job's record (sweep id, results path) into its Hydra job folder."""
    path = Path(job_dir) / JOB_RECORD
    atomic_write_json(
        path, {"sweep_id": in_sweep(), "results": str(Path(results).resolve()), "at": now_iso()}
    )
    return path


def sweep_results(sweep_dir: str | Path, sweep_id: str) -> list[Path]:
    """``results.json`` paths recorded by the jobs of sweep ``sweep_id`` under ``sweep_dir``."""
    found: set[Path] = set()
    for record in sorted(Path(sweep_dir).rglob(JOB_RECORD)):
        job = read_json(record)
        if job.get("sweep_id") == sweep_id:
            found.add(Path(job["results"]))
    return sorted(found)


class TableCallback(Callback):
    """Writes the benchmark's table once, when a multirun ends (see the module docstring)."""

    def __init__(self) -> None:
        self.sweep_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_id = uuid.uuid4().hex
        os.environ[SWEEP_ENV] = self.sweep_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_id, self.sweep_id = self.sweep_id, None
        os.environ.pop(SWEEP_ENV, None)
        app = OmegaConf.select(config, "hydra.job.name", default="benchmark")
        if sweep_id is None or config.get("table") is None or app != "benchmark":
            return  # not the benchmark app (train_victim / run_attack sweeps write no table)
        sweep_dir = OmegaConf.select(config, "hydra.sweep.dir")
        results = sweep_results(sweep_dir, sweep_id)
        if not results:
            log.warning("sweep %s: no job recorded results; no table written", sweep_dir)
            return
        # imported here for its cost (pandas, scipy): the callback is instantiated for every
        # app, the table code runs only here
        from miabench.pipeline.table import write_sweep_table

        # the sweep's own overrides (seed=0,1,2 as typed): they decide where the table goes
        overrides = list(OmegaConf.select(config, "hydra.overrides.task") or [])
        cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        path = write_sweep_table(cfg, results, overrides)
        log.info("sweep table (%d results) → %s", len(results), path)
