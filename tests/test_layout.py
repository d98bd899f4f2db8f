"""The package's shape, as docs/architecture.md promises it: imports flow one way.

Read statically from the source (``ast``): every ``miabench`` import, at module level or
inside a function (a lazy import hides a cycle, it does not remove it), except those under
``if TYPE_CHECKING:``. Checked: no import cycle between modules, every import between
subpackages points down the layers below, and no module over 500 lines.
"""

from __future__ import annotations

import ast
import functools
import graphlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "miabench"

#: subpackage → layer; an import may only point to a lower layer (or stay in its package).
#: The one-direction data flow of the style guide: victims and data → attacks, defenses and
#: checkpoint readers → the pipeline stages → the report and the web app → the apps.
LAYERS = {
    "utils": 0,
    "metrics": 0,
    "miabench": 1,  # the package's __init__ (registers the resolvers)
    "data": 1,
    "data_sources": 1,
    "victims": 1,
    "results": 1,
    "attacks": 2,
    "defenses": 2,
    "checkpoints": 2,
    "pipeline": 3,
    "report": 4,
    "serve": 4,
    "app": 5,  # the top-level Hydra apps and commands (train_victim.py, benchmark.py, ...)
}

MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The miabench modules ``module`` imports (the longest module prefix of each name)."""

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                stem = ".".join([*base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            names = [f"{stem}.{a.name}" for a in node.names]
        for name in names:
            if name == "miabench.conf" or name.startswith("miabench.conf."):
                continue  # the configs (top-level conf/), not code
            target = resolve(name) if name.startswith("miabench") else None
            if target is not None and target != module:
                found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "miabench"
    return parts[1] if (PACKAGE / parts[1]).is_dir() else "app"


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_no_import_cycle() -> None:
    graphlib.TopologicalSorter(_graph()).prepare()  # raises CycleError naming the cycle


def test_imports_point_down_the_layers() -> None:
    graph = _graph()
    unknown = {_layer_of(m) for m in graph} - set(LAYERS)
    assert not unknown, f"subpackages without a layer in tests/test_layout.py: {unknown}"
    upward = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        for b in targets
        if _layer_of(a) != _layer_of(b) and LAYERS[_layer_of(b)] >= LAYERS[_layer_of(a)]
    )
    assert not upward, "imports that do not point down the layers:\n" + "\n".join(upward)


def test_no_module_over_500_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_the_reader_sees_lazy_imports_and_skips_type_checking(tmp_path: Path) -> None:
    """The reader finds an import inside a function and ignores one under TYPE_CHECKING."""
    path = tmp_path / "m.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from miabench.pipeline import x\n"
        "def f():\n    from miabench.attacks.base import Attack\n"
    )
    modules = {"miabench.victims.m": path, "miabench.attacks.base": path, "miabench.pipeline": path}
    assert _imports("miabench.victims.m", path, modules) == {"miabench.attacks.base"}
