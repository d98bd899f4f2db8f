"""Time the metrics of one attack: sklearn's ROC, and the bootstrap intervals.

Rows: ``--n`` test samples (half members, scores of AUC ~0.76 rounded to produce ties).

- ``roc_curve``: ``metrics.roc.roc_curve`` (scikit-learn, ``drop_intermediate=False``);
- ``roc_intervals``: ``metrics.bootstrap.roc_intervals``, ``--boot`` replicates of AUC and
  TPR at 0.1 % / 1 % FPR, by sample and by group (groups of 20 rows), vectorised;
- ``loop``: the same replicates, one ``sklearn.metrics.roc_auc_score`` per replicate (AUC
  only), the straightforward alternative.

Usage (single thread, as every run here):
    OMP_NUM_THREADS=1 python experiments/bench/bootstrap.py --n 5000 --boot 1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from miabench.metrics.bootstrap import roc_intervals
from miabench.metrics.roc import roc_curve


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--boot", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(args.n // 2, dtype=int), np.zeros(args.n - args.n // 2, dtype=int)]
    scores = np.round(rng.normal(size=args.n) + labels, 2)
    groups = np.arange(args.n) // 20

    def loop() -> None:
        draw = np.random.default_rng(0)
        members, others = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        for _ in range(args.boot):
            rows = np.r_[draw.choice(members, len(members)), draw.choice(others, len(others))]
            roc_auc_score(labels[rows], scores[rows])

    print(f"n={args.n} boot={args.boot}")
    print(f"roc_curve            {best_of(lambda: roc_curve(scores, labels)) * 1e3:8.1f} ms")
    by_sample = best_of(lambda: roc_intervals(scores, labels, n_boot=args.boot))
    by_group = best_of(lambda: roc_intervals(scores, labels, groups, n_boot=args.boot))
    print(f"roc_intervals sample {by_sample:8.2f} s  (AUC + 2 TPR@FPR)")
    print(f"roc_intervals group  {by_group:8.2f} s  (AUC + 2 TPR@FPR)")
    print(f"loop of roc_auc_score{best_of(loop, repeat=1):8.2f} s  (AUC only)")


if __name__ == "__main__":
    main()
