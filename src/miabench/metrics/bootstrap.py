"""Bootstrap intervals of membership metrics: one run, several seeds pooled, two scorers paired.

One mechanism serves every interval of the package. A bootstrap replicate is a matrix of
multiplicities (how often each test row is drawn), from :func:`resample_weights`:

- members and non-members are resampled separately (stratified), so every replicate keeps
  the run's member and non-member counts and the AUC is always defined;
- ``groups=None`` resamples rows; with groups (identities whose images are not independent
  evidence, as on MINT's identity-disjoint test halves) whole groups are resampled, so the
  interval reflects the number of identities rather than of images.

Metrics are recomputed on a replicate by weighting the ROC curve with the multiplicities
(:func:`roc_replicates`), which equals recomputing them on the duplicated rows, and is
vectorised over replicates: 1000 replicates of 5000 rows take well under a second.
scikit-learn, scipy and torchmetrics bootstrap rows of one statistic at a time, not strata,
clusters, paired scorers or means over seeds, hence this module.

Intervals (measured coverage in docs/statistics.md, from experiments/bench/coverage.py):

- the single-run AUC gets a **BCa** interval (Efron & Tibshirani 1993, ch. 14; bias from the
  replicates, acceleration from the closed-form jackknife of
  :func:`miabench.metrics.intervals.auc_jackknife`): the percentile interval of an AUC near 1
  on small tests undercovers, its distribution being skewed against the bound;
- TPRs at an FPR keep the **percentile** interval: their jackknife is degenerate (leaving out
  one row moves the TPR by 0 or by one step, so the acceleration estimate is noise), and
  with the :data:`~miabench.metrics.roc.MIN_NONMEMBERS_PER_FPR` rule the percentile interval
  covers; ``ci_method`` in the results names the method of each key;
- differences (paired scorers) get percentile intervals and a two-sided bootstrap p-value
  (:func:`miabench.metrics.intervals.bootstrap_p_value`, never 0), fine enough for Holm or
  Benjamini-Hochberg when ``n_boot`` >= 10^4 (vectorised in chunks: see
  experiments/bench/coverage.py for the time);
- leave-one-out matrices (samples × models) resample samples and models together, in
  :mod:`miabench.metrics.clustered`.

These intervals hold the trained victims fixed: over several seeds, the spread between
victims must come from the seeds themselves (a t-interval or two-stage bootstrap over
seeds, in :mod:`miabench.metrics.seeds`), not from :func:`pooled_roc`'s resampling of rows.

Seeded: the same inputs and seed give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from miabench.metrics.intervals import (
    acceleration,
    auc_jackknife,
    bca_interval,
    bootstrap_p_value,
    jackknife_influence,
    percentile_interval,
)
from miabench.metrics.roc import (
    DEFAULT_FPRS,
    ArrayLike,
    _inputs,
    ci_key,
    observable,
    roc_metrics,
    tpr_at_fpr,
    tpr_key,
    unobservable_note,
)

__all__ = ["percentile_interval"]  # re-exported: it lived here before intervals.py

#: replicates × rows per chunk: bounds the memory of one chunk to a few tens of MB
MAX_CELLS = 2**21

Statistic = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Estimate:
    """A metric over one or several runs: mean, spread over runs and bootstrap interval.

    Attributes:
        value: the metric (mean over runs); None when not observable.
        low: lower end of the interval of ``value``.
        high: upper end.
        std: standard deviation over runs (``ddof=1``; None for one run).
        n_runs: number of runs (seeds) averaged.
        note: why ``value`` is None.
        p_value: for a difference, the two-sided bootstrap p-value of "no difference"
            (:func:`~miabench.metrics.intervals.bootstrap_p_value`); None otherwise.
        per_seed: the metric of each run, in the runs' order.
    """

    value: float | None
    low: float | None
    high: float | None
    std: float | None = None
    n_runs: int = 1
    note: str | None = None
    p_value: float | None = None
    per_seed: tuple[float, ...] | None = None

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (for a difference: significant at 1 − level)."""
        return self.low is not None and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class ScoredRows:
    """The test rows of one run: labels, optional groups and one score array per scorer.

    Attributes:
        labels: (N,) 1 member, 0 non-member.
        scores: one (N,) array per scorer, on the same rows (two for a paired comparison).
        groups: (N,) group (identity) of each row, or None to resample rows.
    """

    labels: np.ndarray
    scores: tuple[np.ndarray, ...]
    groups: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        labels: ArrayLike,
        *scores: ArrayLike,
        groups: Sequence[Any] | np.ndarray | None = None,
    ) -> ScoredRows:
        """Checked arrays (NaN scores, labels other than 0/1, a single class are refused)."""
        checked = [_inputs(s, labels) for s in scores]
        y = checked[0][1]
        g = None if groups is None else np.asarray(groups).reshape(-1)
        if g is not None and len(g) != len(y):
            raise ValueError(f"{len(y)} rows but {len(g)} groups")
        return cls(labels=y, scores=tuple(s for s, _ in checked), groups=g)

    @property
    def n_nonmembers(self) -> int:
        return int(len(self.labels) - self.labels.sum())


def resample_weights(
    strata: ArrayLike,
    n_boot: int,
    rng: np.random.Generator,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Bootstrap multiplicities of rows, in chunks of replicates.

    Within each stratum (class), the stratum's units (rows, or groups when ``groups`` is
    given) are drawn with replacement as many times as the stratum has units, and every row
    gets the number of times its unit was drawn.

    Args:
        strata: (N,) stratum of each row (the labels); each is resampled separately.
        n_boot: number of replicates.
        rng: the random generator (consumed in a fixed order: seeded runs repeat).
        groups: (N,) group of each row, or None to resample rows.

    Yields:
        float64 arrays (b, N), ``b <= n_boot`` replicates each, ``n_boot`` in total.

    Raises:
        ValueError: a group spans two strata (a member identity with non-member images).
    """
    strata = np.asarray(strata).reshape(-1)
    n = len(strata)
    cells: list[tuple[np.ndarray, np.ndarray, int]] = []  # (rows, unit of each row, n units)
    for stratum in np.unique(strata):
        rows = np.flatnonzero(strata == stratum)
        if groups is None:
            cells.append((rows, np.arange(len(rows)), len(rows)))
            continue
        names, unit = np.unique(np.asarray(groups).reshape(-1)[rows], return_inverse=True)
        cells.append((rows, unit, len(names)))
    if groups is not None:
        g = np.asarray(groups).reshape(-1)
        seen = [set(g[rows].tolist()) for rows, _, _ in cells]
        if any(seen[i] & seen[j] for i in range(len(seen)) for j in range(i + 1, len(seen))):
            raise ValueError(
                "a group holds both members and non-members; resample rows instead "
                "(evaluation.bootstrap_by_group=false)"
            )
    chunk = max(1, MAX_CELLS // max(n, 1))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        weights = np.zeros((b, n))
        for rows, unit, k in cells:
            draws = rng.integers(0, k, size=(b, k)) + k * np.arange(b)[:, None]
            counts = np.bincount(draws.ravel(), minlength=b * k).reshape(b, k)
            weights[:, rows] = counts[:, unit]
        yield weights


def roc_replicates(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    fprs: Sequence[float] = DEFAULT_FPRS,
) -> dict[str, np.ndarray]:
    """AUC and TPR at each FPR of weighted rows, for a batch of weightings at once.

    With integer weights this is the metric of the rows repeated as often as their weight:
    the weighted ROC curve over the distinct scores, its trapezoidal area (the Mann-Whitney
    AUC, ties counting one half, as scikit-learn's), and :func:`~miabench.metrics.roc.
    tpr_at_fpr` on it.

    Args:
        scores: (N,) scores, higher = more likely member.
        labels: (N,) 1 member, 0 non-member.
        weights: (B, N) nonnegative multiplicities; each row must weigh both classes.
        fprs: target FPRs.

    Returns:
        ``{"auc": (B,), "tpr_at_<x>pct_fpr": (B,), ...}``.
    """
    order = np.argsort(-scores, kind="stable")
    s, y, w = scores[order], labels[order].astype(bool), weights[:, order]
    # the last row of every run of equal scores: the curve's points (score >= threshold)
    # (compared, not differenced: inf - inf is NaN, and equal infinite scores are one point)
    ends = np.append(np.flatnonzero(s[1:] != s[:-1]), len(s) - 1)
    tp = np.cumsum(np.where(y, w, 0.0), axis=1)[:, ends]
    fp = np.cumsum(np.where(y, 0.0, w), axis=1)[:, ends]
    zero = np.zeros((len(w), 1))
    tpr = np.hstack([zero, tp / tp[:, -1:]])
    fpr = np.hstack([zero, fp / fp[:, -1:]])
    out = {"auc": (np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1])).sum(axis=1) / 2}
    for f in fprs:
        out[tpr_key(f)] = np.asarray(tpr_at_fpr(fpr, tpr, f))
    return out


def replicate_means(
    runs: Sequence[ScoredRows],
    statistic: Callable[[ScoredRows, np.ndarray], dict[str, np.ndarray]],
    n_boot: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Per replicate, the mean over runs of ``statistic`` on each run's own resample.

    Each run (seed) is resampled independently, within its own strata and groups; the
    replicate's value is the mean over runs, the quantity whose interval a pooled or paired
    comparison reports.

    Args:
        runs: the runs' test rows.
        statistic: ``(run, weights (b, N)) -> {name: (b,)}``.
        n_boot: replicates.
        seed: seed of the resampling.

    Returns:
        ``{name: (n_boot,)}``.
    """
    if not runs:
        raise ValueError("no runs to bootstrap")
    rng = np.random.default_rng(seed)
    total: dict[str, np.ndarray] = {}
    for run in runs:
        parts = [statistic(run, w) for w in resample_weights(run.labels, n_boot, rng, run.groups)]
        for name in parts[0]:
            values = np.concatenate([p[name] for p in parts])
            total[name] = total.get(name, 0.0) + values
    return {name: values / len(runs) for name, values in total.items()}


def _unit(runs: Sequence[ScoredRows]) -> str:
    return "sample" if all(r.groups is None for r in runs) else "group"


def roc_intervals(
    scores: ArrayLike,
    labels: ArrayLike,
    groups: Sequence[Any] | np.ndarray | None = None,
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    auc_method: str = "bca",
) -> dict[str, Any]:
    """Bootstrap intervals of one attack's test metrics, as results.json keys.

    Args:
        scores: (N,) test scores, higher = more likely member.
        labels: (N,) 1 member, 0 non-member.
        groups: (N,) group (identity) of every row to resample whole groups, or None to
            resample rows (members and non-members separately, either way).
        fprs: target FPRs; a TPR at an FPR the non-members cannot resolve
            (:func:`~miabench.metrics.roc.observable`) gets no interval.
        n_boot: replicates; 0 writes null intervals.
        level: coverage of the intervals.
        seed: seed of the resampling.
        auc_method: ``"bca"`` (the default) or ``"percentile"`` (the former interval).

    Returns:
        ``auc_ci95`` and ``tpr_at_<x>pct_fpr_ci95`` (``[low, high]`` or None; the suffix
        follows ``level``), ``ci_method`` (``{key: "bca" | "percentile"}``), ``ci_level``,
        ``n_bootstrap``, ``bootstrap_unit`` (``sample`` or ``group``) and, by group,
        ``n_test_groups``.

    Raises:
        ValueError: see :func:`~miabench.metrics.roc.roc_metrics`, or a group holding both
            classes.
    """
    if auc_method not in ("bca", "percentile"):
        raise ValueError(f"auc_method must be 'bca' or 'percentile', got {auc_method!r}")
    run = ScoredRows.of(labels, scores, groups=groups)
    names = ["auc", *(tpr_key(f) for f in fprs)]
    shown = {"auc": True, **{tpr_key(f): observable(f, run.n_nonmembers) for f in fprs}}
    out: dict[str, Any] = {ci_key(name, level): None for name in names}
    if n_boot > 0:
        reps = replicate_means(
            [run], lambda r, w: roc_replicates(r.scores[0], r.labels, w, fprs), n_boot, seed
        )
        for name in names:
            if shown[name]:
                out[ci_key(name, level)] = list(percentile_interval(reps[name], level))
        if auc_method == "bca":
            out[ci_key("auc", level)] = list(_auc_bca(run, reps["auc"], level))
    methods = {ci_key(name, level): "percentile" for name in names}
    methods[ci_key("auc", level)] = auc_method
    out.update(ci_method=methods, ci_level=level, n_bootstrap=int(n_boot))
    out["bootstrap_unit"] = _unit([run])
    if run.groups is not None:
        out["n_test_groups"] = int(len(np.unique(run.groups)))
    return out


def _auc_bca(run: ScoredRows, reps: np.ndarray, level: float) -> tuple[float, float]:
    """BCa interval of one run's AUC: members and non-members are independent strata, each
    unit (row or group) left out in turn for the acceleration."""
    scores, labels = run.scores[0], run.labels
    estimate = float(roc_metrics(scores, labels, ())["auc"])
    influence = [jackknife_influence(loo) for loo in auc_jackknife(scores, labels, run.groups)]
    return bca_interval(reps, estimate, acceleration(influence), level)


def _estimates(
    points: dict[str, np.ndarray],
    reps: dict[str, np.ndarray] | None,
    level: float,
    notes: dict[str, str | None],
    test: bool = False,
) -> dict[str, Estimate]:
    """Estimates of each metric; with ``test`` (a difference), also its bootstrap p-value."""
    out = {}
    for name, values in points.items():
        per_seed = tuple(float(v) for v in values)
        if notes.get(name):
            out[name] = Estimate(None, None, None, None, len(values), notes[name])
            continue
        low, high = percentile_interval(reps[name], level) if reps is not None else (None, None)
        p = bootstrap_p_value(reps[name]) if test and reps is not None else None
        # one run has no spread over runs (None, not 0: a table then shows no ± for it)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out[name] = Estimate(
            float(np.mean(values)), low, high, std, len(values), p_value=p, per_seed=per_seed
        )
    return out


def _notes(runs: Sequence[ScoredRows], fprs: Sequence[float]) -> dict[str, str | None]:
    fewest = min(r.n_nonmembers for r in runs)
    return {
        tpr_key(f): None if observable(f, fewest) else unobservable_note(f, fewest) for f in fprs
    }


def pooled_roc(
    runs: Sequence[ScoredRows],
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Estimate]:
    """One attack over several seeds: mean ± std over seeds and the pooled interval.

    The pooled interval is the percentile interval of the across-seed mean of the metric
    when each seed's test rows are resampled independently (stratified by class; by group
    where the runs have groups). It measures how precisely the test samples pin down the
    mean; the spread of the victims themselves across seeds is the ``std``.

    Args:
        runs: one :class:`ScoredRows` per seed, with one score array each.
        fprs: target FPRs; a TPR that the run with the fewest non-members cannot resolve is
            None with a note.
        n_boot: replicates; 0 gives no interval.
        level: coverage of the interval.
        seed: seed of the resampling.

    Returns:
        ``{"auc": Estimate, "tpr_at_<x>pct_fpr": Estimate, ...}``.
    """
    points = {name: [] for name in ["auc", *(tpr_key(f) for f in fprs)]}
    for run in runs:
        for name, value in roc_metrics(run.scores[0], run.labels, fprs).items():
            points[name].append(value)
    reps = None
    if n_boot > 0:
        reps = replicate_means(
            runs, lambda r, w: roc_replicates(r.scores[0], r.labels, w, fprs), n_boot, seed
        )
    return _estimates(
        {k: np.asarray(v) for k, v in points.items()}, reps, level, _notes(runs, fprs)
    )


def paired_roc(
    runs: Sequence[ScoredRows],
    fprs: Sequence[float] = (0.01,),
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Paired bootstrap of the difference of two scorers on the same test rows.

    Every replicate draws one resample of each run's rows and applies it to both scorers, so
    what the two have in common (which samples were drawn) cancels; over several seeds the
    per-seed differences are averaged within each replicate. Two identical scorers give a
    difference of exactly 0 in every replicate, never significant.

    Args:
        runs: one :class:`ScoredRows` per seed with two score arrays, ``(a, b)``: the
            difference is a − b (e.g. a defense minus the undefended victim).
        fprs: target FPRs of the TPR differences.
        n_boot: replicates; 0 gives no interval.
        level: coverage; :attr:`Estimate.significant` is then significance at 1 − level.
        seed: seed of the resampling.

    Returns:
        ``{"auc": Estimate, "tpr_at_<x>pct_fpr": Estimate, ...}`` of the differences (value
        = mean over seeds of a − b, std over seeds, ``p_value`` two-sided from the
        replicates; ``n_boot`` >= 10^4 makes it fine enough for a multiple-testing
        correction).

    Note:
        Resampling rows holds each seed's victims fixed: over seeds with training
        randomness this test is anti-conservative, and a comparison over seeds belongs to
        :mod:`miabench.metrics.seeds`. Where both arms are the same victim (output
        truncation of one model's scores), resampling rows alone is right.
    """
    if any(len(r.scores) != 2 for r in runs):
        raise ValueError("a paired comparison needs two score arrays per run")

    def delta(run: ScoredRows, w: np.ndarray) -> dict[str, np.ndarray]:
        a = roc_replicates(run.scores[0], run.labels, w, fprs)
        b = roc_replicates(run.scores[1], run.labels, w, fprs)
        return {name: a[name] - b[name] for name in a}

    points = {name: [] for name in ["auc", *(tpr_key(f) for f in fprs)]}
    for run in runs:
        a = roc_metrics(run.scores[0], run.labels, fprs)
        b = roc_metrics(run.scores[1], run.labels, fprs)
        for name in points:
            points[name].append(a[name] - b[name])
    reps = replicate_means(runs, delta, n_boot, seed) if n_boot > 0 else None
    return _estimates(
        {k: np.asarray(v) for k, v in points.items()}, reps, level, _notes(runs, fprs), test=True
    )


def paired_mean(
    runs: Sequence[tuple[ArrayLike, ArrayLike, Sequence[Any] | None]],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Paired bootstrap of the difference of two per-sample means (e.g. non-member PSNR of a
    defended and the undefended victim on the same images), averaged over seeds.

    Args:
        runs: per seed ``(a, b, groups)``: (N,) values of the same samples under a and b, and
            their groups (or None to resample samples).
        n_boot: replicates; 0 gives no interval.
        level: coverage of the interval.
        seed: seed of the resampling.

    Returns:
        The :class:`Estimate` of mean(a) − mean(b), with its two-sided ``p_value``.
    """
    rows = []
    for a, b, groups in runs:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape or a.ndim != 1:
            raise ValueError(f"paired values need equal (N,) shapes, got {a.shape} and {b.shape}")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError("paired values must be finite (an exact copy's PSNR is infinite)")
        g = None if groups is None else np.asarray(groups)
        rows.append(ScoredRows(np.zeros(len(a), dtype=np.int64), (a - b,), g))

    def mean(run: ScoredRows, w: np.ndarray) -> dict[str, np.ndarray]:
        return {"delta": (w @ run.scores[0]) / w.sum(axis=1)}

    points = np.asarray([float(r.scores[0].mean()) for r in rows])
    reps = replicate_means(rows, mean, n_boot, seed) if n_boot > 0 else None
    return _estimates({"delta": points}, reps, level, {}, test=True)["delta"]
