"""Reference models per hour: one after another vs concurrently through Hydra's joblib launcher.

Trains the same ``--models`` small references of one population twice, each time as a Hydra
multirun of ``python -m miabench.train_victim`` over ``split.population.model=1..M`` (the
command ``pipeline/population.py: train_command`` prints):

- ``sequential``: ``hydra/launcher=local`` (Hydra's basic launcher), one model after the
  other in one process, torch using every core;
- ``parallel``: ``hydra/launcher=parallel`` (hydra-joblib-launcher), ``${mia_jobs:}`` jobs
  with cores // jobs torch threads each (``utils/device.py``).

Each mode has its own cache (nothing is reused between them); the embedded data is built
once beforehand in a shared folder, so both time training alone (plus the population draw
and process start-up each needs). Prints wall time, models/hour, their ratio, the machine's
load average before and after (other jobs on the machine slow both modes), and whether both
modes trained victims under the same cache keys (the launcher must not change what is
trained).

The references are pix2pix on embedded edges2fashion (experiment=embedded/pix2pix_edges2fashion,
64x64, batch 1), shortened by ``--epochs`` and ``--members``.

Usage:
    python experiments/bench/reference_population.py --models 8 --epochs 1 --members 32
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONF = Path(__file__).resolve().parents[2] / "conf"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _train(
    root: Path, data: Path, launcher: str, models: str, args: argparse.Namespace
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "miabench.train_victim",
        "-m",
        # this checkout's configs (an installed package may point elsewhere)
        f"--config-path={CONF}",
        f"hydra/launcher={launcher}",
        "experiment=embedded/pix2pix_edges2fashion",
        f"reference.n_models={args.models}",
        f"split.n_members={args.members}",
        f"split.n_nonmembers={args.members}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.enable_progress_bar=false",
        f"paths.root_dir={root}",
        f"paths.data_dir={data}",
        f"split.population.model={models}",
        "seed='${mia_add:0,${split.population.model}}'",
        "split.seed=0",
        "reference.seed=0",
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8, help="references to train")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--members", type=int, default=32, help="members = non-members")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_refpop_"))
    data = work / "data"
    models = ",".join(str(k) for k in range(1, args.models + 1))

    # build the embedded data once (training model 0 for 0 epochs builds it and the split)
    warm = _train(
        work / "warmup", data, "local", "0", argparse.Namespace(**{**vars(args), "epochs": 0})
    )
    if warm.returncode:
        sys.exit(f"warm-up failed:\n{warm.stderr[-3000:]}")

    results = {}
    for mode, launcher in (("sequential", "local"), ("parallel", "parallel")):
        root = work / mode
        load = _load()
        start = time.perf_counter()
        done = _train(root, data, launcher, models, args)
        wall = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
        trained = sorted(
            p.parent.name for p in (root / "outputs" / "cache" / "victims").glob("*/victim.pt")
        )
        if len(trained) != args.models:
            sys.exit(f"{mode}: {len(trained)} victims trained, expected {args.models}")
        results[mode] = (wall, trained)
        print(
            f"{mode:10s} {args.models} models in {wall:7.1f} s = "
            f"{args.models / wall * 3600:7.1f} models/hour  (load before: {load}; "
            f"after: {_load()})",
            flush=True,
        )
    ratio = results["sequential"][0] / results["parallel"][0]
    print(f"ratio parallel/sequential throughput: {ratio:.2f}x on {os.cpu_count()} cores")
    same = results["sequential"][1] == results["parallel"][1]
    print(f"same victim cache keys in both modes: {same}")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
