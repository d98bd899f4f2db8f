"""Coverage of the package's single-run and leave-one-out intervals, by simulation with known truth.

Every section draws scores from Gaussians whose population metric is known in closed form,
builds the interval the package reports, and counts how often it covers the truth
(nominal 0.95). With ``--trials 2000`` the binomial sd of a 0.95 coverage is about 0.005,
enough to see a 3-point shortfall.

Sections:
- ``auc``: single-run AUC, BCa (the default) and percentile (the former), AUC 0.6 / 0.8 /
  0.97, 32 / 100 / 500 per class;
- ``tpr``: TPR at 1 % FPR: the nominal percentile interval where observable (1000
  non-members) and the reached operating point's Clopper-Pearson interval (100 and 500
  non-members), truth the TPR of the chosen cut;
- ``accuracy``: Wilson interval of the accuracy at a fixed threshold;
- ``loo``: leave-one-out samples × models interval, model spread 0 / 0.3 / 0.6, two-way
  (the default) and samples only (the former);
- ``time``: seconds of a paired bootstrap with 10^4 replicates (p-values fine enough for
  Holm / BH).

- ``seeds``: from experiments/bench/coverage_seeds.py: the multi-seed interval's coverage
  with a seed effect, the defense test's false-star rate under a seed effect and the chance
  of at least one false star in a table of 49 null tests, raw and after Holm / BH (these
  three are rates: nominal 0.05).

Usage (single thread):
    OMP_NUM_THREADS=1 python experiments/bench/coverage.py --trials 2000 --boot 1000
    OMP_NUM_THREADS=1 python experiments/bench/coverage.py --sections auc loo --trials 500
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
from scipy import stats

from miabench.metrics.bootstrap import (
    ScoredRows,
    paired_roc,
    roc_intervals,
)
from miabench.metrics.clustered import clustered_roc_intervals
from miabench.metrics.roc import reached_operating_point, threshold_metrics

Row = dict[str, object]


def _row(section: str, setting: str, method: str, covered: int, trials: int, **extra) -> Row:
    rate = covered / trials
    sd = np.sqrt(0.95 * 0.05 / trials)
    return {
        "section": section,
        "setting": setting,
        "method": method,
        "coverage": rate,
        "sd": sd,
        "trials": trials,
        **extra,
    }


def auc_section(trials: int, n_boot: int) -> list[Row]:
    rows = []
    for auc in (0.6, 0.8, 0.97):
        d = np.sqrt(2) * stats.norm.ppf(auc)
        for n in (32, 100, 500):
            rng = np.random.default_rng(0)
            covered = {"bca": 0, "percentile": 0}
            for t in range(trials):
                labels = np.r_[np.ones(n, dtype=int), np.zeros(n, dtype=int)]
                scores = rng.normal(size=2 * n) + d * labels
                for method in covered:
                    low, high = roc_intervals(
                        scores, labels, fprs=(), n_boot=n_boot, seed=t, auc_method=method
                    )["auc_ci95"]
                    covered[method] += low <= auc <= high
            for method, c in covered.items():
                rows.append(_row("auc", f"AUC {auc} {n} vs {n}", method, c, trials))
    return rows


def tpr_section(trials: int, n_boot: int) -> list[Row]:
    d = 1.5  # members N(1.5, 1): AUC 0.86, TPR at 1 % FPR 0.204
    rows = []
    truth = 1 - stats.norm.cdf(stats.norm.ppf(0.99) - d)
    rng = np.random.default_rng(1)
    covered = 0
    for t in range(trials):  # nominal interval, observable: 1000 non-members
        labels = np.r_[np.ones(1000, dtype=int), np.zeros(1000, dtype=int)]
        scores = rng.normal(size=2000) + d * labels
        low, high = roc_intervals(scores, labels, fprs=(0.01,), n_boot=n_boot, seed=t)[
            "tpr_at_1pct_fpr_ci95"
        ]
        covered += low <= truth <= high
    rows.append(_row("tpr", "TPR@1% nominal, 1000 vs 1000", "percentile", covered, trials))
    for n0 in (100, 500):
        covered = 0
        for _ in range(trials):
            labels = np.r_[np.ones(n0, dtype=int), np.zeros(n0, dtype=int)]
            scores = rng.normal(size=2 * n0) + d * labels
            out = reached_operating_point(scores, labels, 0.01)
            k = out["tpr_at_1pct_fpr_reached_counts"][2]
            cut = np.sort(scores[n0:])[-(k + 1)]  # strictly above the (k+1)-th non-member
            low, high = out["tpr_at_1pct_fpr_reached_ci95"]
            covered += low <= 1 - stats.norm.cdf(cut - d) <= high
        rows.append(
            _row("tpr", f"TPR@1% reached, {n0} vs {n0}", "clopper-pearson", covered, trials)
        )
    return rows


def accuracy_section(trials: int) -> list[Row]:
    rows = []
    truth = stats.norm.cdf(0.5)  # members N(1, 1), non-members N(0, 1), threshold 0.5
    rng = np.random.default_rng(2)
    for n in (32, 100, 500):
        covered = 0
        for _ in range(trials):
            labels = np.r_[np.ones(n, dtype=int), np.zeros(n, dtype=int)]
            low, high = threshold_metrics(rng.normal(size=2 * n) + labels, labels, 0.5)[
                "accuracy_ci95"
            ]
            covered += low <= truth <= high
        rows.append(_row("accuracy", f"accuracy {n} vs {n}", "wilson", covered, trials))
    return rows


def loo_section(trials: int, n_boot: int, n: int = 100, k: int = 8) -> list[Row]:
    """A per-sample effect (sd 1), noise (sd 1) and a per-model membership signal
    0.8 + spread * z: truth Phi(0.8 / sqrt(4 + spread^2))."""
    rows = []
    for spread in (0.0, 0.3, 0.6):
        truth = stats.norm.cdf(0.8 / np.sqrt(4 + spread**2))
        rng = np.random.default_rng(3)
        covered = {True: 0, False: 0}
        for t in range(trials):
            labels = np.zeros((n, k), dtype=int)
            for j in range(k):
                labels[rng.permutation(n)[: n // 2], j] = 1
            signal = 0.8 + spread * rng.normal(size=k)
            scores = rng.normal(size=(n, 1)) + rng.normal(size=(n, k)) + signal * labels
            for two_way in covered:
                low, high = clustered_roc_intervals(
                    scores, labels, fprs=(), n_boot=n_boot, seed=t, resample_models=two_way
                )["auc_ci95"]
                covered[two_way] += low <= truth <= high
        for two_way, c in covered.items():
            method = "two-way" if two_way else "samples only"
            rows.append(_row("loo", f"spread {spread}, {n} x {k}", method, c, trials))
    return rows


def time_section() -> list[Row]:
    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(1000, dtype=int), np.zeros(1000, dtype=int)]
    a, b = rng.normal(size=2000) + labels, rng.normal(size=2000) + labels
    start = time.perf_counter()
    est = paired_roc([ScoredRows.of(labels, a, b)], fprs=(0.01,), n_boot=10_000)["auc"]
    seconds = time.perf_counter() - start
    return [
        {
            "section": "time",
            "setting": "paired_roc 1000 vs 1000, B = 10^4",
            "method": f"{seconds:.2f} s",
            "coverage": float("nan"),
            "sd": float("nan"),
            "trials": 1,
            "p_value": est.p_value,
        }
    ]


def _seed_sections(trials: int) -> list[Row]:
    """The multi-seed coverage, the defense test's false-star rate and the per-table
    family-wise rate (experiments/bench/coverage_seeds.py), as rows of this table: each
    method's figure of a section is one row (a rate, not a coverage, where nominal is 0.05)."""
    path = Path(__file__).with_name("coverage_seeds.py")
    spec = importlib.util.spec_from_file_location("coverage_seeds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows: list[Row] = []
    for section in module.sections(trials):
        n = int(section["trials"])
        for method, value in section.items():
            if method in ("what", "nominal", "trials"):
                continue
            rows.append(
                {
                    "section": "seeds",
                    "setting": f"{section['what']} (nominal {section['nominal']})",
                    "method": method,
                    "coverage": float(value),
                    "sd": float(np.sqrt(value * (1 - value) / n)),
                    "trials": n,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument(
        "--sections", nargs="*", default=["auc", "tpr", "accuracy", "loo", "time", "seeds"]
    )
    args = parser.parse_args()
    runs = {
        "auc": lambda: auc_section(args.trials, args.boot),
        "tpr": lambda: tpr_section(args.trials, args.boot),
        "accuracy": lambda: accuracy_section(args.trials),
        "loo": lambda: loo_section(args.trials, args.boot),
        "time": time_section,
        "seeds": lambda: _seed_sections(args.trials),
    }
    print(f"trials={args.trials} boot={args.boot} (nominal 0.95)")
    print(f"{'section':9} {'setting':64} {'method':26} {'coverage':>8} {'± sd':>6} {'s':>6}")
    for name in args.sections:
        start = time.perf_counter()
        rows = runs[name]()
        seconds = time.perf_counter() - start
        for r in rows:
            print(
                f"{r['section']:9} {r['setting']:64} {r['method']:26} {r['coverage']:8.3f} "
                f"{r['sd']:6.3f} {seconds:6.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
