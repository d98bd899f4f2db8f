"""Stage 3: join finished attack results with the published numbers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from miabench.results.runs import collect_results, group_seeds, result_paths
from miabench.results.table import (
    UTILITY_METRICS,
    build_table,
    load_targets,
    no_targets,
    write_table,
)

log = logging.getLogger(__name__)


def table_writer(table: DictConfig) -> Callable[[DictConfig, list[Path]], tuple[Path, Path]]:
    """The function a table config's ``writer`` names: ``(table, result paths) -> (md, csv)``.

    Raises:
        ValueError: ``writer`` is not a ``{_target_: <function>, _partial_: true}`` node (an
            older config's dotted string, say), naming the table.
    """
    spec = table.writer
    if not isinstance(spec, DictConfig) or "_target_" not in spec:
        raise ValueError(
            f"table {table.get('name')!r}: `writer` must be a node "
            f"{{_target_: <function>, _partial_: true}}, got {spec!r}"
        )
    return instantiate(spec)


def make_table(cfg: DictConfig) -> tuple[Path, Path]:
    """Write the table ``cfg.table`` describes as Markdown and CSV; return both paths."""
    table = cfg.table
    if table.get("writer"):
        # tables with a layout of their own (MINT: rows = layer, columns = N) write themselves
        return table_writer(table)(table, result_paths(list(table.results)))
    paths = result_paths(list(table.results))
    log.info("table %s: %d result files", table.name, len(paths))
    results = collect_results(paths)
    if table.get("include_victims"):
        results = [r for r in results if r["run"]["victim"] in table.include_victims]
    # `targets: null` makes a table of measured runs only (no published numbers to join)
    if table.get("targets"):
        targets = load_targets(table.targets)
    else:
        targets = no_targets(table.columns)
    if table.get("include_victims"):
        targets = targets[targets["victim"].isin(list(table.include_victims))]
    frames = [
        build_table(
            results,
            targets,
            OmegaConf.to_container(table.columns, resolve=True),
            include_missing=table.include_missing,
            utility_metrics=list(table.get("utility") or UTILITY_METRICS),
            per_seed=per_seed,
            paired=OmegaConf.to_container(table.paired, resolve=True)
            if table.get("paired")
            else {},
        )
        for per_seed in (False, True)
    ]
    if not table.get("targets"):
        # nothing published: the published/delta columns would only hold dashes
        frames = [
            f.drop(columns=[c for c in f if c.endswith(("_published", "_delta"))]) for f in frames
        ]
    notes = [f"Regenerate: `{table.command}`", f"Result files: {len(paths)}"]
    superseded = group_seeds(results)[1]
    if superseded:
        notes.append(f"{len(superseded)} older result(s) of the same setting and seed left out")
    return write_table(
        frames[0], Path(table.out_dir), table.name, table.title, notes, per_seed=frames[1]
    )
