"""Report the largest modules and functions under ``src/`` (issue 17's "must show").

Run: ``python experiments/bench/code_shape.py [--top 12] [--root src]``. Lines are physical
lines; a function's size is its ``end_lineno - lineno + 1`` (decorators excluded), methods
included as ``Class.method``. Written by hand because no library prints exactly this; radon's
raw metrics count modules, not the largest functions with their qualified names.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}{node.name}", node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="src")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    modules, functions = [], []
    for path in sorted(Path(args.root).rglob("*.py")):
        text = path.read_text()
        modules.append((len(text.splitlines()), str(path)))
        for name, size in _functions(ast.parse(text)):
            functions.append((size, f"{path}:{name}"))
    modules.sort(reverse=True)
    functions.sort(reverse=True)
    print(f"{len(modules)} modules, {sum(m for m, _ in modules)} lines, {len(functions)} functions")
    print(f"largest modules (top {args.top}):")
    for size, name in modules[: args.top]:
        print(f"  {size:5d}  {name}")
    print(f"largest functions (top {args.top}):")
    for size, name in functions[: args.top]:
        print(f"  {size:5d}  {name}")
    over = [f for f in functions if f[0] > 60]
    print(
        f"functions over 60 lines: {len(over)}; modules over 600 lines: "
        f"{sum(1 for m in modules if m[0] > 600)}"
    )


if __name__ == "__main__":
    main()
