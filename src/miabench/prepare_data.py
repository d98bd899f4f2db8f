"""Download, verify and unpack a public dataset into the layout its reader expects.

    python -m miabench.prepare_data facades                  # download (resumes), verify, unpack
    python -m miabench.prepare_data cityscapes_fine --archive gtFine_trainvaltest.zip \\
        --archive leftImg8bit_trainvaltest.zip               # login-only: files you downloaded
    python -m miabench.prepare_data --list

The data folder is ``--data-dir`` (default ``$MIABENCH_ROOT/data``, i.e. the configs'
``paths.data_dir``); each dataset goes to the folder its data configs read by default.
The datasets are YAML files in ``miabench/data_sources/registry/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from miabench.data_sources import PrepareError, available, load_source, prepare


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns the exit status (1 with a one-line error on failure)."""
    parser = argparse.ArgumentParser(
        prog="python -m miabench.prepare_data",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="datasets: " + ", ".join(available()),
    )
    parser.add_argument("name", nargs="?", help="registered dataset (see --list)")
    parser.add_argument(
        "--archive",
        action="append",
        default=[],
        metavar="PATH",
        help="a file you downloaded (repeatable); recognised by its content",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MIABENCH_ROOT", ".")) / "data",
        help="data folder (default: $MIABENCH_ROOT/data or ./data)",
    )
    parser.add_argument("--root", type=Path, help="dataset folder (default: its config's root)")
    parser.add_argument("--mirror", help="site mirror replacing scheme and host of every URL")
    parser.add_argument("--list", action="store_true", help="list the datasets and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[prepare_data] %(message)s")
    if args.list or not args.name:
        for name in available():
            source = load_source(name)
            how = "--archive needed" if source.needs_archive else "downloadable"
            print(f"{name:16s} → <data_dir>/{source.root:14s} ({how}) {source.homepage}")
        return 0 if args.list else 2
    try:
        source = load_source(args.name)
        root = prepare(source, args.data_dir, args.archive, root=args.root, mirror=args.mirror)
    except (PrepareError, KeyError) as err:
        print(f"prepare_data: error: {err}", file=sys.stderr)
        return 1
    print(f"[prepare_data] {source.name} ready in {root}")
    for config in source.data_configs:
        print(f"[prepare_data]   use: data={config} data.root={root}")
    if source.note:
        print(f"[prepare_data]   note: {source.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
