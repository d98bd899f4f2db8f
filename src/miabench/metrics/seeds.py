"""Intervals and tests over seeds: the victims' training randomness counted, not only the
test samples'.

A metric of a setting trained with k seeds varies for two reasons: which test samples were
drawn, and how each victim happened to train. Resampling each seed's samples with the
victims held fixed (a pooled bootstrap) sees only the first, and its 95 % interval covered
the true mean 0.62–0.89 of the time under a modest seed effect. Each seed's own estimate
already includes its sample noise, so the spread of the k per-seed estimates carries both:
the interval here is Student's t over seeds, mean ± t_{k−1, 0.975} · sd / √k (chosen over
a two-stage bootstrap: exact under normal per-seed estimates, honest with as few as 2 seeds,
where it is very wide, and the same rule as ``mint_protocols.seed_summary``). A difference
between two arms trained separately (a defense and the undefended victim, seed by seed) is
tested the same way on its per-seed differences: the paired t-test over seeds (Dietterich
1998, "Approximate statistical tests for comparing supervised classification learning
algorithms"). Two arms scored on the same victim (a post-hoc defense such as output
truncation, or two attacks of one run) share their training randomness, so resampling the
samples alone stays right: :func:`samples_test`, whose p-value comes from the bootstrap
replicates, (1 + count) / (B + 1), with B ≥ 10⁴ so that a Holm-adjusted p can still fall
below 0.05.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from miabench.metrics.bootstrap import Estimate, percentile_interval
from miabench.metrics.intervals import bootstrap_p_value

#: bootstrap replicates behind a p-value (the floor of a p-value is 1 / (B + 1))
P_VALUE_REPLICATES = 10_000
#: how each kind of interval was obtained (the tables' ``_test`` column)
T_OVER_SEEDS = "t over seeds"
PAIRED_T_OVER_SEEDS = "paired t over seeds"
SAMPLES_BOOTSTRAP = "paired bootstrap of samples (same victim)"
ONE_SEED = "one seed: samples only"


@dataclass(frozen=True)
class SeedEstimate(Estimate):
    """An :class:`~miabench.metrics.bootstrap.Estimate` with what a table shows beside it.

    ``per_seed`` and ``p_value`` are :class:`Estimate`'s; ``per_seed`` defaults to ``()``
    here (a table always shows the seeds it rests on).

    Attributes:
        test: how the interval and p-value were obtained (:data:`T_OVER_SEEDS`, ...).
    """

    per_seed: tuple[float, ...] = ()
    test: str | None = None


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """Student's t interval of the mean of ``values`` (at least two).

    Returns:
        ``(mean, low, high, sd)`` with ``sd`` over values (``ddof=1``).
    """
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("a t-interval needs at least two values")
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * sd / np.sqrt(len(x))
    return mean, mean - half, mean + half, sd


def over_seeds(
    values: Sequence[float],
    level: float = 0.95,
    paired: bool = False,
    bounds: tuple[float, float] | None = None,
) -> SeedEstimate:
    """The mean over seeds of a metric (or of a paired difference) with its t-interval.

    Args:
        values: one estimate per seed (each seed's own metric, or its defended − undefended
            difference on the same samples).
        level: coverage of the interval.
        paired: ``values`` are differences: also give the paired t-test's two-sided p-value
            (None where the differences do not vary: the t-statistic is undefined).
        bounds: the metric's range (``(0, 1)`` for an AUC or a TPR): the interval is clipped
            to it (a t-interval knows no bounds; clipping never lowers its coverage).

    Returns:
        A :class:`SeedEstimate`; one seed gives the value alone (no interval, no p-value).
    """
    x = tuple(float(v) for v in values)
    if len(x) == 1:
        return SeedEstimate(x[0], None, None, None, 1, per_seed=x, test=ONE_SEED)
    mean, low, high, sd = t_interval(x, level)
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    p = None
    if paired and sd > 0:
        p = float(stats.ttest_1samp(x, 0.0).pvalue)
    test = PAIRED_T_OVER_SEEDS if paired else T_OVER_SEEDS
    return SeedEstimate(mean, low, high, sd, len(x), per_seed=x, p_value=p, test=test)


def samples_test(
    per_seed: Sequence[float],
    replicates: np.ndarray | None,
    level: float = 0.95,
) -> SeedEstimate:
    """A paired difference of two arms on the same victim: the mean of ``per_seed`` with the
    percentile interval and bootstrap p-value of ``replicates`` (each the mean over seeds of
    the difference on one resample of every seed's samples).

    Args:
        per_seed: the difference on each seed's full test samples.
        replicates: (B,) bootstrap replicates of the mean difference; None: no interval.
        level: coverage of the interval.
    """
    x = tuple(float(v) for v in per_seed)
    sd = float(np.std(x, ddof=1)) if len(x) > 1 else None
    if replicates is None:
        return SeedEstimate(float(np.mean(x)), None, None, sd, len(x), per_seed=x)
    low, high = percentile_interval(replicates, level)
    identical = bool(np.all(replicates == 0))  # the same scores: nothing to test
    p = None if identical else bootstrap_p_value(replicates)
    return SeedEstimate(
        float(np.mean(x)), low, high, sd, len(x), per_seed=x, p_value=p, test=SAMPLES_BOOTSTRAP
    )


def per_seed_text(values: Sequence[float]) -> str | None:
    """The per-seed values as one CSV cell, ``"0.9100;0.9300;0.9500"`` (4 decimals)."""
    return ";".join(f"{v:.4f}" for v in values) if len(values) else None


def summary(estimate: Estimate) -> Mapping[str, object]:
    """The fields of a (Seed)Estimate a table writes beside its value."""
    return {
        "per_seed": per_seed_text(getattr(estimate, "per_seed", ()) or ()),
        "p": getattr(estimate, "p_value", None),
        "test": getattr(estimate, "test", None),
    }
