"""Time the reference-model attacks (LiRA, RMIA, dense LiRA) on cached signals.

Issue 13's target: scoring 10 000 samples x 64 models from cached signals in under 1 s on
the CPU. The signals are synthetic (per-sample IN/OUT Gaussians with a random pkeep-0.5
membership matrix, the same statistics a signal cache holds); the attacks only see arrays,
so their cost does not depend on where the numbers came from. Each attack is timed as one
call with model 0 as the target and the other 63 as references (median of ``--repeats``
runs, after one warm-up), plus one full leave-one-out pass (all 64 models as the target).

For contrast, RMIA's pairwise count is also timed the way an N x Z matrix computes it
(``mean(ratio_x[:, None] / ratio_z[None] >= gamma)``, in row blocks to bound memory), and
checked equal to the vectorised sort + searchsorted count.

Usage:
    OMP_NUM_THREADS=1 python experiments/bench/reference_scoring.py --samples 10000 --models 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from miabench.attacks.reference.evaluation import leave_one_out
from miabench.attacks.reference.lira import (
    lira_offline,
    lira_online,
    pixel_lira,
    pixel_lira_offline,
)
from miabench.attacks.reference.rmia import rmia, rmia_marginal


def make_signals(n: int, k: int, patches: int, seed: int):
    """(N, K) statistics, (N, K) likelihoods, (N, P, K) maps and the (N, K) membership."""
    rng = np.random.default_rng(seed)
    member = rng.random((n, k)) < 0.5
    mu = rng.normal(0.0, 2.0, (n, 1))
    stats = mu + member * rng.uniform(0.2, 1.5, (n, 1)) + rng.normal(size=(n, k))
    likelihood = 1.0 / (1.0 + np.exp(-stats))
    maps = rng.normal(0.0, 2.0, (n, patches, 1)) + rng.normal(size=(n, patches, k))
    maps[:, :2] += member[:, None, :] * 0.5
    return stats, likelihood, maps, member


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-touch allocations and imports
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matrix_rmia(ratio: np.ndarray, gamma: float, block: int = 1000) -> np.ndarray:
    """RMIA's count as an N x Z comparison (all rows as the population, self excluded)."""
    n = ratio.size
    out = np.empty(n)
    for lo in range(0, n, block):
        hit = ratio[lo : lo + block, None] / ratio[None, :] >= gamma
        hit[np.arange(hit.shape[0]), np.arange(lo, lo + hit.shape[0])] = False
        out[lo : lo + block] = hit.sum(axis=1) / (n - 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=64, help="target + references")
    parser.add_argument("--patches", type=int, default=16, help="P of the dense maps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads")
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    stats, like, maps, mem = make_signals(args.samples, args.models, args.patches, args.seed)
    t, ref, rmem = stats[:, 0], stats[:, 1:], mem[:, 1:]
    p_t, p_ref = like[:, 0], like[:, 1:]
    n, k = stats.shape
    calls: dict[str, Callable[[], object]] = {
        "lira_online (per-sample σ)": lambda: lira_online(t, ref, rmem),
        "lira_online (fix_variance)": lambda: lira_online(t, ref, rmem, fix_variance=True),
        "lira_online (mean center)": lambda: lira_online(t, ref, rmem, center="mean"),
        "lira_offline (fix_variance)": lambda: lira_offline(t, ref, rmem),
        "rmia online": lambda: rmia(p_t, p_ref, rmem),
        "rmia offline a=0.3": lambda: rmia(p_t, p_ref, rmem, a=0.3),
        f"pixel_lira (P={args.patches})": lambda: pixel_lira(maps[..., 0], maps[..., 1:], rmem),
        f"pixel_lira_offline (P={args.patches})": lambda: pixel_lira_offline(
            maps[..., 0], maps[..., 1:], rmem
        ),
    }
    with threadpool_limits(args.threads):
        print(f"{n} samples x {k} models ({k - 1} references), {args.threads} thread(s)")
        print("| attack | one target (s) |")
        print("|---|---|")
        for name, fn in calls.items():
            print(f"| {name} | {median_time(fn, args.repeats):.3f} |")

        loo = {
            "lira_online": lambda: leave_one_out(lira_online, stats, mem),
            "lira_offline": lambda: leave_one_out(lira_offline, stats, mem),
            "rmia online": lambda: leave_one_out(rmia, like, mem),
        }
        print(f"\n| leave-one-out ({k} targets) | total (s) |")
        print("|---|---|")
        for name, fn in loo.items():
            print(f"| {name} | {median_time(fn, 1):.2f} |")

        ratio = p_t / rmia_marginal(p_ref, rmem)
        t_matrix = median_time(lambda: matrix_rmia(ratio, 1.0), 1)
        same = np.array_equal(matrix_rmia(ratio, 1.0), rmia(p_t, p_ref, rmem))
        print(f"\nRMIA count as an N x Z matrix in row blocks: {t_matrix:.3f} s (equal: {same})")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
