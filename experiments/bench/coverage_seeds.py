"""Coverage of the tables' over-seed statistics, by simulation with known truth.

Sections (each a dict: what, nominal, ours, today's, trials):

1. the multi-seed AUC interval under a seed effect: k = 3 victims whose true AUC varies
   across seeds (sd ``SEED_SD``), each scored on its own test samples; today's pooled
   bootstrap (samples resampled, victims fixed) against the t-interval over seeds;
2. the false ``*`` rate of the defense test under a seed effect and no true difference:
   today's sample-only paired bootstrap against the paired t over seeds;
3. the family-wise rate of at least one false ``*`` in a table of ``N_TESTS`` null tests,
   raw, Holm and Benjamini–Hochberg (the per-seed differences are drawn directly: the
   paired t sees nothing else).

Run: ``OMP_NUM_THREADS=1 python experiments/bench/coverage_seeds.py --trials 2000``;
:func:`sections` is what ``experiments/bench/coverage.py`` calls.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from miabench.metrics.bootstrap import ScoredRows, paired_roc, pooled_roc
from miabench.metrics.multiplicity import adjust
from miabench.metrics.roc import roc_metrics
from miabench.metrics.seeds import over_seeds

SEEDS = 3
SEED_SD = 0.04
N_PER_CLASS = 100
N_BOOT = 200
N_TESTS = 49
TRUE_AUC = 0.8


def _run(rng: np.random.Generator, auc: float) -> tuple[np.ndarray, np.ndarray]:
    """Members N(d, 1), non-members N(0, 1): true AUC Φ(d / √2)."""
    d = np.sqrt(2) * stats.norm.ppf(auc)
    y = np.r_[np.ones(N_PER_CLASS), np.zeros(N_PER_CLASS)]
    return y, np.r_[rng.normal(d, 1, N_PER_CLASS), rng.normal(0, 1, N_PER_CLASS)]


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    return roc_metrics(scores, labels, ())["auc"]


def seed_interval_coverage(trials: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    pooled = ours = 0
    for trial in range(trials):
        runs = [_run(rng, a) for a in TRUE_AUC + rng.normal(0, SEED_SD, SEEDS)]
        est = pooled_roc([ScoredRows.of(y, s) for y, s in runs], (), N_BOOT, seed=trial)["auc"]
        pooled += est.low <= TRUE_AUC <= est.high
        t = over_seeds([_auc(s, y) for y, s in runs])
        ours += t.low <= TRUE_AUC <= t.high
    return {
        "what": f"coverage, mean AUC over {SEEDS} seeds, seed sd {SEED_SD}",
        "nominal": 0.95,
        "ours (t over seeds)": ours / trials,
        "today (pooled bootstrap)": pooled / trials,
        "trials": trials,
    }


def defense_false_star_rate(trials: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    today = ours = 0
    for trial in range(trials):
        rows, diffs = [], []
        for a, b in zip(*(0.75 + rng.normal(0, SEED_SD, (2, SEEDS))), strict=True):
            (y, sa), (_, sb) = _run(rng, a), _run(rng, b)
            rows.append(ScoredRows.of(y, sa, sb))
            diffs.append(_auc(sa, y) - _auc(sb, y))
        today += paired_roc(rows, (), N_BOOT, seed=trial)["auc"].significant
        p = over_seeds(diffs, paired=True).p_value
        ours += p is not None and p < 0.05
    return {
        "what": f"false * rate, defense vs none, no true effect, seed sd {SEED_SD}",
        "nominal": 0.05,
        "ours (paired t over seeds)": ours / trials,
        "today (sample bootstrap)": today / trials,
        "trials": trials,
    }


def table_familywise_rate(trials: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    diffs = rng.normal(0, 0.05, size=(trials, N_TESTS, SEEDS))
    p = stats.ttest_1samp(diffs, 0.0, axis=2).pvalue
    rates = {
        name: float(np.mean([(adjust(row, m) < 0.05).any() for row in p]))
        for name, m in (("holm", "holm"), ("bh", "bh"))
    }
    return {
        "what": f"P(≥ 1 false * in a table of {N_TESTS} null tests)",
        "nominal": 0.05,
        "raw": float((p < 0.05).any(axis=1).mean()),
        "Holm": rates["holm"],
        "Benjamini–Hochberg": rates["bh"],
        "trials": trials,
    }


def sections(trials: int = 2000, seed: int = 0) -> list[dict]:
    """Every section's figures (see the module docstring)."""
    return [
        seed_interval_coverage(trials, seed),
        defense_false_star_rate(trials, seed + 1),
        table_familywise_rate(trials, seed + 2),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    for section in sections(args.trials, args.seed):
        print(
            " | ".join(
                f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in section.items()
            )
        )
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
