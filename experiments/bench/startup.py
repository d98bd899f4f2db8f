"""Startup time and peak memory of the Hydra apps: ``--help``, a config error, ``make_table``.

Each case runs in a fresh interpreter from an empty folder, ``repeats`` times; the median wall
time and the peak resident memory are printed as a Markdown table. ``--src`` picks the source
tree on ``PYTHONPATH``, so a before/after comparison is two runs, e.g.

    python experiments/bench/startup.py --src /work/main/src      # before (main)
    python experiments/bench/startup.py --src src                 # after (this tree)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [
    ("train_victim --help", ["miabench.train_victim", "--help"]),
    ("run_attack --help", ["miabench.run_attack", "--help"]),
    ("benchmark --help", ["miabench.benchmark", "--help"]),
    ("make_table --help", ["miabench.make_table", "--help"]),
    ("train_victim victim=no_such (config error)", ["miabench.train_victim", "victim=no_such"]),
    ("make_table (no results yet)", ["miabench.make_table"]),
]

# Run one case as a child and report its peak RSS (RUSAGE_CHILDREN of a fresh parent is the
# child's own peak, unlike the cumulative figure a long-lived parent would see).
_RUNNER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.run([sys.executable, "-m", *sys.argv[1:]], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode
dt = time.perf_counter() - t0
print(json.dumps({"rc": rc, "s": dt,
                  "mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measure(src: Path, args: list[str], repeats: int) -> tuple[float, float, int]:
    """Median seconds, peak MB and return code of ``python -m <args>``."""
    env = dict(os.environ, PYTHONPATH=str(src.resolve()))
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cwd:
            out = subprocess.run(
                [sys.executable, "-c", _RUNNER, *args],
                capture_output=True,
                text=True,
                cwd=cwd,
                env=env,
                check=True,
            )
        runs.append(json.loads(out.stdout))
    return (
        statistics.median(r["s"] for r in runs),
        max(r["mb"] for r in runs),
        runs[-1]["rc"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).parents[2] / "src")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"source: {args.src.resolve()}  ({args.repeats} runs each, {time.strftime('%F %T')})")
    print("| command | median s | peak MB | exit |\n|---|---:|---:|---:|")
    for name, case in CASES:
        seconds, mb, rc = measure(args.src, case, args.repeats)
        print(f"| `{name}` | {seconds:.2f} | {mb:.0f} | {rc} |", flush=True)


if __name__ == "__main__":
    main()
