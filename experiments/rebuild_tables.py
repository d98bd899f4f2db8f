"""Check that every committed table rebuilds identical from its committed run records.

    python experiments/rebuild_tables.py                 # every table folder under results/
    python experiments/rebuild_tables.py defenses_pix2pix embedded_pix2pix

For every table config (``conf/table/<name>.yaml``) whose ``<name>.md`` is committed in a
folder under ``results/``, the folder is copied to a temporary directory, ``make_table`` is
run there from the copied records alone (``table.out_dir=<copy>``, ``table.sources=[]``),
and the table's Markdown and CSV files are compared byte for byte with the committed ones.
Prints one line per table (identical / different / error) with its wall time; exits 1
unless all are identical.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hydra import compose, initialize_config_module

import miabench  # noqa: F401  (registers the config resolvers)


@dataclass
class Check:
    """The rebuild of one committed table."""

    table: str
    folder: Path
    status: str  # identical | different | error
    detail: str
    seconds: float


def table_names() -> list[str]:
    """Every table config's name (``conf/table/*.yaml``)."""
    folder = resources.files("miabench.conf") / "table"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def committed_tables(results_dir: Path, names: list[str]) -> list[tuple[str, Path]]:
    """``(table, folder)`` for every ``<folder>/<table>.md`` under ``results_dir``."""
    found = []
    for name in names:
        for md in sorted(results_dir.rglob(f"{name}.md")):
            if "runs" not in md.relative_to(results_dir).parts:
                found.append((name, md.parent))
    return found


def _table_files(folder: Path, name: str) -> list[Path]:
    # the table and its views (<name>_per_seed.md, ...), not a README or other tables, also
    # not a table whose name extends this one (embedded_mint_by_sample beside embedded_mint)
    longer = [t for t in table_names() if t.startswith(f"{name}_")]

    def own(stem: str) -> bool:
        if any(stem == t or stem.startswith(f"{t}_") for t in longer):
            return False
        return stem == name or stem.startswith(f"{name}_")

    return sorted(p for p in folder.iterdir() if p.suffix in (".md", ".csv") and own(p.stem))


def rebuild(name: str, folder: Path, results_dir: Path, work: Path) -> Check:
    """Rebuild table ``name`` from a copy of ``folder`` and compare its files."""
    from miabench.pipeline.table import make_table

    copy = Path(tempfile.mkdtemp(dir=work)) / folder.relative_to(results_dir)
    shutil.copytree(folder, copy)
    committed = {p.name: p for p in _table_files(folder, name)}
    for stale in _table_files(copy, name):
        stale.unlink()  # what the rebuild writes must come from the records alone
    start = time.perf_counter()
    try:
        with initialize_config_module("miabench.conf", version_base="1.3"):
            cfg = compose(
                "make_table",
                [
                    f"table={name}",
                    f"table.out_dir={copy}",
                    "table.sources=[]",
                    f"paths.results_dir={results_dir}",
                ],
            )
        make_table(cfg)
    except Exception as err:  # noqa: BLE001 - reported per table, the check goes on
        return Check(
            name, folder, "error", f"{type(err).__name__}: {err}", time.perf_counter() - start
        )
    seconds = time.perf_counter() - start
    rebuilt = {p.name: p for p in _table_files(copy, name)}
    differ = sorted(
        n
        for n in committed.keys() | rebuilt.keys()
        if n not in committed
        or n not in rebuilt
        or not filecmp.cmp(committed[n], rebuilt[n], shallow=False)
    )
    if differ:
        return Check(name, folder, "different", ", ".join(differ), seconds)
    return Check(name, folder, "identical", ", ".join(sorted(committed)), seconds)


def check_all(results_dir: Path, names: list[str] | None = None) -> list[Check]:
    """Rebuild every committed table named in ``names`` (default: all) under ``results_dir``."""
    results_dir = results_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="rebuild_tables_") as tmp:
        return [
            rebuild(name, folder, results_dir, Path(tmp))
            for name, folder in committed_tables(results_dir, names or table_names())
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", help="table names (default: every table)")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    checks = check_all(args.results_dir, args.tables or None)
    total = 0.0
    for check in checks:
        total += check.seconds
        where = check.folder.relative_to(args.results_dir.resolve())
        print(
            f"{check.status:9s} {check.table:28s} {str(where):36s} {check.seconds:6.1f} s  {check.detail}"
        )
    print(f"{sum(c.status == 'identical' for c in checks)}/{len(checks)} identical, {total:.1f} s")
    return 0 if checks and all(c.status == "identical" for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
