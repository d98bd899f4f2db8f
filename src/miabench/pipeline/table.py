"""Stage 3: join finished attack results with the published numbers.

A table is built from the **run records** kept beside it, ``<out_dir>/runs/<run>/`` (one
folder per attack run, named as its attack folder: ``results.json``, the per-sample scores,
utility and population files, the ROC plots and the victim's ``key.json``; never victims or
signals), which the table config's ``results`` globs read. So ``python -m miabench.make_table
table=X`` rebuilds a committed table from a fresh clone. A benchmark job or sweep copies its
fresh runs in first (:func:`publish_table`), and writes into ``results/`` only when it is the
table's documented ``command`` (:func:`route_table`); any other run writes the same table
under ``${paths.output_dir}/tables/``.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from miabench.results.runs import (
    VICTIM_KEY,
    collect_results,
    group_seeds,
    result_paths,
    setting_key,
)
from miabench.results.table import (
    UTILITY_METRICS,
    build_table,
    load_targets,
    no_targets,
    write_table,
)
from miabench.utils.io import atomic_write, read_json

log = logging.getLogger(__name__)

#: Folder of a table's run records, under its ``out_dir``.
RUNS = "runs"
#: Files of a run kept as its record (what every table writer reads): most committed
#: scores.csv are tens of kB, MINT's (over 15 000 images) ~6 MB. Plots come along for the
#: reader; victims and signals never.
#: Their ``.sha256`` sidecars stay behind: a sidecar guards a cache file that a later run
#: reuses, while a record is read by the tables only and its integrity is git's.
RECORD_FILES = (
    "results.json",
    "scores.csv",
    "scores_leave_one_out.csv",
    "utility.csv",
    "population.csv",
    "roc_linear.png",
    "roc_loglog.png",
    "leave_one_out/roc_loglog.png",
    "strength_vs_references.png",
)
#: The trained victim's ``key.json`` (its resolved config: output dimensions of the claims
#: tables), copied into the record under this name since the victim itself is not kept.
#: Override keys that never decide whether a run is a table's documented command: where
#: and how it was launched (``hydra.*``, ``hydra/launcher=...``) and the publish switch.
_IGNORED_KEYS = ("hydra", "table.publish", "+table.publish")


class NoRunRecords(FileNotFoundError):
    """A table's ``results`` globs matched no results.json."""


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


def table_inputs(table: DictConfig) -> list[Path]:
    """The results.json files a table rests on: its ``results`` globs, expanded, with
    byte-identical copies of one run counted once.

    Raises:
        NoRunRecords: nothing matched; the message names the globs searched and the
            table's ``command``, which makes the runs.
    """
    patterns = [str(p) for p in table.results]
    paths = result_paths(patterns)
    if not paths:
        raise NoRunRecords(
            f"table {table.name}: no results.json matched {patterns}. Make the runs with "
            f"`{table.get('command')}` (it copies their records to "
            f"{Path(table.out_dir) / RUNS}/), or point table.results at finished runs."
        )
    # A writer may keep its own copy of a run's results.json beside the record (the claims
    # tables' runs/<point>-s<seed>/): one run must not count as two seeds.
    seen: dict[str, Path] = {}
    for path in paths:
        seen.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return sorted(seen.values())


def make_table(cfg: DictConfig) -> tuple[Path, Path]:
    """Write the table ``cfg.table`` describes as Markdown and CSV; return both paths.

    Raises:
        NoRunRecords: the table's ``results`` globs matched nothing (see :func:`table_inputs`).
    """
    table = cfg.table
    # tables with a layout of their own (MINT: rows = layer, columns = N) write themselves
    writer = table_writer(table) if table.get("writer") else None
    paths = table_inputs(table)
    log.info("table %s: %d result files", table.name, len(paths))
    if writer is not None:
        return writer(table, paths)
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
            multiple_testing=table.get("multiple_testing", "holm"),
        )
        for per_seed in (False, True)
    ]
    if not table.get("targets"):
        # nothing published: the published/delta columns would only hold dashes
        frames = [
            f.drop(columns=[c for c in f if c.endswith(("_published", "_delta"))]) for f in frames
        ]
    notes = [f"Regenerate: `{table.command}`", f"Result files: {len(paths)}"]
    notes += imported_notes(results)
    superseded = group_seeds(results)[1]
    if superseded:
        notes.append(f"{len(superseded)} older result(s) of the same setting and seed left out")
    return write_table(
        frames[0], Path(table.out_dir), table.name, table.title, notes, per_seed=frames[1]
    )


def imported_notes(results: Iterable[dict]) -> list[str]:
    """One note per victim whose weights were imported (``victim.checkpoint``), not trained."""
    imported = sorted(
        {
            f"{r['run']['victim']} on {r['run']['dataset']}: {r['run']['victim_weights']}"
            for r in results
            if str(r["run"].get("victim_weights", "trained")).startswith("imported")
        }
    )
    return [f"Victim weights imported (not trained here): {v}" for v in imported]


def _copy(src: Path, dest: Path) -> None:
    atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))


def _seed_setting(path: Path) -> tuple[str, str] | None:
    try:
        (result,) = collect_results([path])
    except (OSError, ValueError):
        return None  # not a readable record: left alone
    return setting_key(result), str(result["run"].get("seed"))


def copy_records(out_dir: str | Path, results: Iterable[str | Path]) -> list[Path]:
    """Copy each run's record files to ``<out_dir>/runs/<attack folder>/``.

    A record already there for the same setting and seed (an older run of it) is removed, so
    the folder holds what the table rests on and a rebuild does not depend on file times
    (a fresh clone has none).

    Args:
        out_dir: the table's folder.
        results: the runs' results.json files.

    Returns:
        The copied results.json files.
    """
    runs = Path(out_dir) / RUNS
    copied = []
    for src in map(Path, results):
        dest_dir = runs / src.parent.name
        if src.parent.resolve() != dest_dir.resolve():
            key = _seed_setting(src)
            for old in sorted(runs.glob("*/results.json")) if runs.is_dir() else []:
                if old.parent.name != dest_dir.name and _seed_setting(old) == key:
                    log.info("record %s superseded by %s: removed", old.parent, src.parent)
                    shutil.rmtree(old.parent)
            for name in RECORD_FILES:
                if (src.parent / name).is_file():
                    _copy(src.parent / name, dest_dir / name)
            victim_dir = read_json(src)["run"].get("victim_dir")
            if victim_dir and (Path(victim_dir) / "key.json").is_file():
                _copy(Path(victim_dir) / "key.json", dest_dir / VICTIM_KEY)
        copied.append(dest_dir / "results.json")
        log.info("run record %s → %s", src.parent.name, dest_dir)
    return copied


def publish_table(cfg: DictConfig, results: Sequence[str | Path]) -> Path:
    """Copy the runs' records beside ``cfg.table`` and write it from its records.

    The table is built from its ``results`` globs (the records), not from ``results``
    directly, so what is written equals what ``make_table`` rebuilds from a fresh clone.
    Returns the table's Markdown path.
    """
    copy_records(cfg.table.out_dir, results)
    return make_table(cfg)[0]


def rebuild_table(cfg: DictConfig) -> tuple[Path, Path]:
    """``make_table``: copy the finished runs its ``sources`` match (runs under outputs/, none
    on a fresh clone) into the table's records, then write it from its records.

    Raises:
        NoRunRecords: no record and no source (the message names the globs and command).
    """
    sources = result_paths([str(p) for p in cfg.table.get("sources") or []])
    if sources:
        log.info("table %s: %d finished run(s) from table.sources", cfg.table.name, len(sources))
        copy_records(cfg.table.out_dir, sources)
    return make_table(cfg)


def _overrides(tokens: Iterable[str]) -> list[str]:
    return [t for t in tokens if "=" in t and not t.startswith("-")]


def documented_commands(command: str, app: str = "benchmark") -> list[list[str]]:
    """The overrides of each ``python -m miabench.<app>`` in a table's shell ``command``.

    Args:
        command: the table config's ``command`` (may chain commands with ``&&`` or ``;``
            and end with a ``#`` comment).
        app: the Hydra app whose invocations count.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|()"):
            segments.append([])
        else:
            segments[-1].append(token)
    found = []
    for tokens in segments:
        for i in range(len(tokens) - 1):
            if tokens[i] == "-m" and tokens[i + 1] == f"miabench.{app}":
                found.append(_overrides(tokens[i + 2 :]))
                break
    return found


def _key(override: str) -> str:
    return override.split("=", 1)[0].strip()


def _normalised(overrides: Iterable[str], table_name: str, drop_seed: bool) -> set[str]:
    out = set()
    for override in overrides:
        key = _key(override)
        if key.startswith(_IGNORED_KEYS) or override.strip() == f"table={table_name}":
            continue
        if drop_seed and key.lstrip("+~") == "seed":
            continue
        out.add(override.strip())
    return out


def is_documented_run(table: DictConfig, overrides: Sequence[str]) -> tuple[bool, str]:
    """Whether a run with these Hydra task overrides is the table's documented ``command``.

    Compared as sets (order ignored) after dropping ``hydra`` keys, ``table.publish`` and
    ``table=<this table>`` (the experiment names it anyway); a ``seed`` list is ignored when
    the command lists one (more seeds are the same table). ``table.publish=true`` publishes
    any run.

    Returns:
        ``(publish, why)``: why in words, for the log.
    """
    if table.get("publish"):
        return True, "table.publish=true"
    command = str(table.get("command") or "")
    candidates = documented_commands(command)
    if not candidates:
        return False, f"its command `{command}` runs no miabench.benchmark"
    ours = list(overrides)
    for documented in candidates:
        drop_seed = any(_key(o).lstrip("+~") == "seed" for o in documented)
        expected = _normalised(documented, table.name, drop_seed)
        got = _normalised(ours, table.name, drop_seed)
        if got == expected:
            return True, f"the documented command `{command}`"
    extra = sorted(got - expected)
    missing = sorted(expected - got)
    return False, (
        f"not the documented command `{command}` (extra overrides {extra}, missing {missing})"
    )


def route_table(cfg: DictConfig, overrides: Sequence[str]) -> bool:
    """Send ``cfg.table`` to ``results/`` only for its documented command; else under outputs.

    A table whose ``out_dir`` lies under ``paths.results_dir`` is moved to
    ``${paths.output_dir}/tables/<the same relative folder>`` unless :func:`is_documented_run`;
    an ``out_dir`` outside ``results/`` (set on the command line, say) is kept. Logs where
    and why. Returns whether the table is published into ``results/``.
    """
    publish, why = is_documented_run(cfg.table, overrides)
    out_dir = Path(cfg.table.out_dir)
    results_dir = Path(cfg.paths.results_dir)
    inside = out_dir.resolve().is_relative_to(results_dir.resolve())
    if publish or not inside:
        log.info("table %s → %s (%s)", cfg.table.name, out_dir, why)
        return publish and inside
    target = (
        Path(cfg.paths.output_dir) / "tables" / out_dir.resolve().relative_to(results_dir.resolve())
    )
    with open_dict(cfg):
        cfg.table.out_dir = str(target)
    log.info(
        "table %s → %s, not %s: %s; pass table.publish=true to write results/",
        cfg.table.name,
        target,
        out_dir,
        why,
    )
    return False


def write_sweep_table(
    cfg: DictConfig, results: Sequence[str | Path], overrides: Sequence[str] = ()
) -> Path:
    """Route ``cfg.table`` by the run's ``overrides``, copy the runs' records beside it and
    write it from them (:func:`~miabench.pipeline.table.publish_table`)."""
    route_table(cfg, overrides)
    return publish_table(cfg, results)
