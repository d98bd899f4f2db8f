"""Write docs/config_reference.md: every Hydra config group, option file and key, with defaults.

The reference is generated from the YAML files themselves (the values as written and the
comments above each key), so it cannot drift from them; tests/test_docs.py checks that the
committed file equals a fresh run. The output is deterministic: files in sorted order, keys in
file order, no dates or absolute paths.

Usage::

    python scripts/config_reference.py                 # writes docs/config_reference.md
    python scripts/config_reference.py -o /tmp/ref.md  # elsewhere
    python scripts/config_reference.py --check         # exit 1 if the committed file is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
#: Where the configs live: the top-level conf/ (shipped in the wheel as ``miabench/conf``).
CONF_CANDIDATES: tuple[Path, ...] = (REPO / "conf",)
DEFAULT_OUT = REPO / "docs" / "config_reference.md"
#: Entry configs, one per app, in the order a user meets them.
ENTRY_APPS: dict[str, str] = {
    "train_victim.yaml": "python -m miabench.train_victim",
    "run_attack.yaml": "python -m miabench.run_attack",
    "benchmark.yaml": "python -m miabench.benchmark",
    "make_table.yaml": "python -m miabench.make_table",
    "report.yaml": "python -m miabench.report",
}
#: Groups whose option files are per machine and git-ignored: never part of the reference.
PRIVATE_GROUPS = ("local",)
#: Groups whose sub-folders hold options, not sub-groups: ``experiment=shafran2021/pix2pix_facades``.
PATH_OPTION_GROUPS = ("experiment",)

KEY_LINE = re.compile(
    r"^(?P<indent> *)(?P<key>[^\s#\-][^:#]*?|\"[^\"]*\"|'[^']*'):(?:\s+(?P<rest>.*))?$"
)
PACKAGE_LINE = re.compile(r"^#\s*@package\s+(?P<package>\S+)")


def find_conf_dir() -> Path:
    """The config directory of this checkout (the first candidate holding an entry config)."""
    for candidate in CONF_CANDIDATES:
        if (candidate / "train_victim.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        "no Hydra config directory with train_victim.yaml in "
        + ", ".join(str(c) for c in CONF_CANDIDATES)
    )


def split_inline_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` → (value, comment), leaving a ``#`` inside quotes alone."""
    quote = ""
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


@dataclass
class Parsed:
    """What the line scan finds in one YAML file."""

    header: list[str] = field(default_factory=list)
    package: str | None = None
    #: dotted key → (raw value text as written on the key's line, comment above or inline)
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)


def scan(text: str) -> Parsed:
    """Comments and raw values of every mapping key, by dotted path (list items skipped)."""
    parsed = Parsed()
    lines = text.splitlines()
    i = 0
    # The leading comment block is the file's description (and its @package directive).
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        line = lines[i].strip()
        match = PACKAGE_LINE.match(line)
        if match:
            parsed.package = match["package"]
        else:
            parsed.header.append(line.lstrip("#").strip())
        i += 1
    pending: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings
    block_indent: int | None = None  # inside a block scalar (|, >) started at this indent
    list_indent: int | None = None  # inside a block list started at this indent
    for line in lines[i:]:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if block_indent is not None:
            if not stripped or indent > block_indent:
                continue
            block_indent = None
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if list_indent is not None:
            if indent > list_indent or (indent == list_indent and stripped.startswith("- ")):
                pending = []
                continue
            list_indent = None
        if stripped.startswith("- ") or stripped == "-":
            # a block list item: its content (deeper lines) is a value, not keys
            list_indent = indent
            pending = []
            continue
        match = KEY_LINE.match(line)
        if not match:
            pending = []
            continue
        key = match["key"].strip().strip("\"'")
        raw, inline = split_inline_comment(match["rest"] or "")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        comment = " ".join(pending + ([inline] if inline else []))
        pending = []
        if key != "<<":
            parsed.keys[path] = (raw, comment)
        if raw in ("|", ">", "|-", ">-", "|+", ">+"):
            block_indent = indent
        elif raw == "" or raw.startswith("&"):
            stack.append((indent, key))
    return parsed


def flow(value: Any) -> str:
    """A loaded value in YAML flow style on one line."""
    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def md_text(text: str, cell: bool = False) -> str:
    """Markdown-safe prose: ``<...>`` shown literally, and in a table cell ``|`` escaped.

    Code spans are left alone: Python-Markdown's tables do not split a row at a ``|`` inside
    backticks, and would show an escaping backslash there.
    """
    parts = text.split("`")
    for j in range(0, len(parts), 2):
        parts[j] = parts[j].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if cell:
            parts[j] = parts[j].replace("|", "\\|")
    return "`".join(parts)


def md_code(text: str) -> str:
    """Inline code (its ``|`` left alone, see :func:`md_text`)."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def rows(data: Any, parsed: Parsed, prefix: str, path: str = "") -> list[tuple[str, str, str]]:
    """(override key, default, description) for every key of ``data``, in file order."""
    out: list[tuple[str, str, str]] = []
    if not isinstance(data, dict):
        return out
    for key, value in data.items():
        if not path and key == "defaults":
            continue
        dotted = f"{path}.{key}" if path else str(key)
        raw, comment = parsed.keys.get(dotted, ("", ""))
        full = f"{prefix}.{dotted}" if prefix else dotted
        inline = raw.startswith("{")  # a flow mapping: shown as written, not key by key
        if isinstance(value, dict) and value and not inline:
            default = "(mapping)"
        elif raw in ("|", ">", "|-", ">-", "|+", ">+"):
            first = str(value).strip().splitlines()[0] if str(value).strip() else ""
            default = md_code(first + " …")
        elif raw and not raw.startswith("&"):
            default = md_code(raw)
        else:
            default = md_code(flow(value))
        out.append((md_code(full), default, md_text(comment, cell=True)))
        if isinstance(value, dict) and not inline:
            out.extend(rows(value, parsed, prefix, dotted))
    return out


def package_of(parsed: Parsed, group: str) -> str:
    """The key prefix of a group option (Hydra's default package, or its @package line)."""
    package = parsed.package
    if package is None:
        return group.replace("/", ".")
    if package == "_global_":
        return ""
    return package.replace("_group_", group.replace("/", ".")).removeprefix("_global_.")


def describe(path: Path, group: str) -> list[str]:
    """The Markdown section of one YAML file."""
    text = path.read_text(encoding="utf-8")
    parsed = scan(text)
    data = yaml.safe_load(text) or {}
    prefix = package_of(parsed, group) if group else ""
    lines: list[str] = []
    header = " ".join(h for h in parsed.header if h)
    if header:
        lines += [md_text(header), ""]
    if parsed.package is not None:
        lines += [f"Package: `{parsed.package}` (keys are given from the config root).", ""]
    if isinstance(data, dict) and data.get("defaults"):
        items = ", ".join(md_code(flow(item)) for item in data["defaults"])
        lines += [f"Defaults list: {items}", ""]
    table = rows(data, parsed, prefix)
    if table:
        lines += ["| Key | Default | Description |", "|---|---|---|"]
        lines += [f"| {k} | {d} | {c} |" for k, d, c in table]
        lines.append("")
    elif not isinstance(data, dict) or not data or list(data) == ["defaults"]:
        lines += ["(no keys of its own)", ""]
    return lines


def selector(conf: Path, path: Path) -> str:
    """How the command line picks an option file: ``group=option``."""
    rel = path.relative_to(conf).with_suffix("")
    if rel.parts[0] in PATH_OPTION_GROUPS:
        return f"{rel.parts[0]}={'/'.join(rel.parts[1:])}"
    return f"{rel.parent.as_posix()}={rel.name}"


def anchor(text: str) -> str:
    """The id mkdocs' toc extension gives a heading (for the overview's links)."""
    slug = re.sub(r"[^\w\s-]", "", text.lower()).strip()
    return re.sub(r"[-\s]+", "-", slug)


def render(conf: Path) -> str:
    """The whole reference as Markdown."""
    entries = [conf / name for name in ENTRY_APPS if (conf / name).is_file()]
    entries += sorted(p for p in conf.glob("*.yaml") if p.name not in ENTRY_APPS)
    groups: dict[str, list[Path]] = {}
    for path in sorted(conf.rglob("*.yaml")):
        rel = path.relative_to(conf)
        if len(rel.parts) == 1 or rel.parts[0] in PRIVATE_GROUPS:
            continue
        groups.setdefault(rel.parent.as_posix(), []).append(path)

    out = [
        "# Config reference",
        "",
        "<!-- Generated by scripts/config_reference.py from the Hydra configs; do not edit. -->",
        "",
        "Every Hydra config of miabench: the entry config of each app, then every config group,",
        "every option of the group and every key of the option, with the default as written",
        "and the comment written above it. Pick an option with `group=option` (e.g.",
        "`data=facades`, `experiment=shafran2021/pix2pix_facades`), set a key with",
        "`key=value` (e.g. `data.image_size=128`), as in",
        "`python -m miabench.benchmark data=facades split=paper`. Keys are given from the",
        "config root, so they are what the command line takes. `???` marks a value that must",
        "be set; `${...}` is an interpolation resolved when the config is composed.",
        "Group `local/` holds git-ignored per-machine overrides and is not listed.",
        "",
        "Regenerate with `python scripts/config_reference.py` after changing a config.",
        "",
        "## Groups",
        "",
        "| Group | Options |",
        "|---|---|",
    ]
    for group, paths in groups.items():
        links = ", ".join(f"[`{p.stem}`](#{anchor(selector(conf, p))})" for p in paths)
        out.append(f"| `{group}` | {links} |")
    out.append("")
    out += ["## Entry configs", ""]
    for path in entries:
        app = ENTRY_APPS.get(path.name)
        out += [f"### {path.stem}", ""]
        if app:
            out += [f"The config of `{app}`.", ""]
        out += describe(path, "")
    for group, paths in groups.items():
        out += [f"## {group}", ""]
        for path in paths:
            out += [f"### {selector(conf, path)}", ""]
            out += describe(path, group)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", type=Path, default=None, help="config directory")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help="Markdown to write")
    parser.add_argument(
        "--check", action="store_true", help="compare with --out instead of writing it"
    )
    args = parser.parse_args(argv)
    text = render(args.conf or find_conf_dir())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is stale: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
