"""Privacy–utility comparison of defenses: one row per defense, and a utility-vs-AUC plot.

The results are runs of a comparison in which only ``defense=`` (and the seed) changed: the
victim's utility (on raw outputs), every attack's AUC and TPR at 1 % FPR, and DP's ε at δ
where the defense reports one. Every seed is kept: a row is a defense's mean ± std over
seeds with a t-interval over seeds (``<name>_per_seed`` has one row per seed). Defenses
share the membership split and the test samples of a seed, so each is compared with the
undefended victim (``none``) on the same samples, in AUC, TPR at 1 % FPR and every utility
metric: a defense that trains its own victim by the paired t-test over the per-seed
differences (training randomness counted, Dietterich 1998; one seed is not tested), a
post-hoc defense that reuses the undefended victim (equal ``run.victim_key``, e.g. output
truncation) by a paired bootstrap of the samples. All the table's p-values are adjusted
together (``table.multiple_testing``: ``holm``, the default, or ``bh``); ``*`` = adjusted
p < 0.05, the CSV keeps raw and adjusted p.

Defenses judged by the strongest attack (Aerni et al., CCS 2024): given the runs of a
reference-model comparison of the same defenses (``table.reference``; one
``attack=reference`` run per defense), each row also gets the best reference attack of its
defense (LiRA/RMIA, chosen per defense by leave-one-out TPR at 1 % FPR, then AUC) with its
leave-one-out AUC and TPR, the reference-free attack of the same run on the same pairs, and
the paired difference of the two (whole samples resampled with all their pairs). Choosing
the best of several attacks on the pairs it is then measured on would favour it, so the
samples are split in two by a hash of their id (:func:`~miabench.results.reference_columns.selection_half`): the best attack is
chosen on one half and every column is measured on the other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from miabench.metrics.bootstrap import Estimate, ScoredRows, replicate_means
from miabench.metrics.calibration import group_of
from miabench.metrics.seeds import P_VALUE_REPLICATES, over_seeds, samples_test
from miabench.results.estimates import (
    TABLE_SEED,
    apply_multiple_testing,
    bootstrap_settings,
    estimate_columns,
    multiple_testing_note,
    paired_columns,
    paired_difference,
    same_victim,
    seed_estimate,
)
from miabench.results.markdown import markdown_view, to_markdown
from miabench.results.privacy_utility_plot import plot_privacy_utility
from miabench.results.reference_columns import strongest_attack_columns
from miabench.results.runs import (
    collect_results,
    describe_grouping,
    group_seeds,
    grouping_lines,
    held_out_scores,
    read_run_csv,
    result_paths,
    run_file,
    seeds_label,
)
from miabench.results.table import INTERVAL_LEGEND
from miabench.utils.io import atomic_write, atomic_write_text

#: the defense every other one is compared with
REFERENCE = "none"


def _by_seed(runs: Sequence[Mapping[str, Any]]) -> dict[Any, Mapping[str, Any]]:
    return {r["run"].get("seed"): r for r in runs}


def _pairs(
    runs: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(defended run, reference run) of every seed both have."""
    theirs = _by_seed(reference)
    return [(r, theirs[seed]) for seed, r in _by_seed(runs).items() if seed in theirs]


def paired_attack(
    pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    attack: str,
    metric: str,
    n_boot: int,
    level: float,
) -> Estimate:
    """``metric`` (``auc`` or a TPR@FPR) of a defended run minus the reference run on the
    test samples the two share, over the seeds of ``pairs``
    (:func:`miabench.results.estimates.paired_difference`: paired t over seeds, or the samples'
    paired bootstrap where every pair is one victim).

    Returns an empty estimate with a note when a run lacks scores.csv or the attack.

    Raises:
        ValueError: naming both files, when a pair's test samples or labels differ (the runs
            do not share the membership split, so they cannot be paired).
    """
    runs = []
    for ours, theirs in pairs:
        a, b = held_out_scores(ours, [attack]), held_out_scores(theirs, [attack])
        if a is None or b is None:
            return Estimate(None, None, None, note="no scores.csv with this attack")
        (a, groups), (b, _) = a, b
        joined = a.merge(b, on="sample_id", suffixes=("", "_ref"), validate="one_to_one")
        if (
            len(joined) != len(a)
            or len(joined) != len(b)
            or (joined["label"] != joined["label_ref"]).any()
        ):
            raise ValueError(
                f"{ours.get('_path')} and {theirs.get('_path')}: different test samples or "
                "labels; a paired comparison needs the same membership split and seed"
            )
        if groups is not None:
            groups = joined["sample_id"].map(group_of).to_numpy()
        runs.append(
            ScoredRows.of(
                joined["label"],
                joined[f"{attack}.score"],
                joined[f"{attack}.score_ref"],
                groups=groups,
            )
        )
    if not runs:
        return Estimate(None, None, None, note=f"no {REFERENCE} run of the same seed")
    same = all(same_victim(ours, theirs) for ours, theirs in pairs)
    return paired_difference(runs, metric, same, n_boot, level)


def paired_utility(
    pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    role: str,
    metric: str,
    n_boot: int,
    level: float,
) -> Estimate:
    """The mean per-sample utility ``metric`` of ``role`` samples (``utility.csv``), defended
    minus reference, over the seeds of ``pairs``: paired t over the per-seed differences, or
    (every pair one victim) a paired bootstrap of the samples."""
    runs = []
    for ours, theirs in pairs:
        a, b = run_file(ours, "utility.csv"), run_file(theirs, "utility.csv")
        if a is None or b is None:
            return Estimate(None, None, None, note="no utility.csv")
        a, b = read_run_csv(a), read_run_csv(b)
        if metric not in a or metric not in b:
            return Estimate(None, None, None, note=f"no per-sample {metric}")
        a, b = a[a["role"] == role], b[b["role"] == role]
        joined = a.merge(b, on="sample_id", suffixes=("", "_ref"), validate="one_to_one")
        if len(joined) != len(a) or len(joined) != len(b):
            raise ValueError(
                f"{ours.get('_path')} and {theirs.get('_path')}: different {role} samples; "
                "a paired comparison needs the same membership split and seed"
            )
        grouped = any((i or {}).get("bootstrap_unit") == "group" for i in ours["attacks"].values())
        groups = joined["sample_id"].map(group_of).to_numpy() if grouped else None
        runs.append((joined[metric].to_numpy(), joined[f"{metric}_ref"].to_numpy(), groups))
    if not runs:
        return Estimate(None, None, None, note=f"no {REFERENCE} run of the same seed")
    rows = []
    for a, b, groups in runs:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            # e.g. an infinite PSNR of an exact copy
            return Estimate(None, None, None, note="paired values must be finite")
        rows.append(ScoredRows(np.zeros(len(a), dtype=np.int64), (a - b,), groups))
    points = [float(r.scores[0].mean()) for r in rows]
    if not all(same_victim(ours, theirs) for ours, theirs in pairs):
        return over_seeds(points, level, paired=True)
    if n_boot <= 0:
        return samples_test(points, None, level)

    def mean(run: ScoredRows, w: np.ndarray) -> dict[str, np.ndarray]:
        return {"delta": (w @ run.scores[0]) / w.sum(axis=1)}

    reps = replicate_means(rows, mean, max(n_boot, P_VALUE_REPLICATES), TABLE_SEED)["delta"]
    return samples_test(points, reps, level)


def _unique(values: Iterable[Any]) -> Any:
    """One value when all seeds agree, else all of them (``"30/32/34"``)."""
    found = list(dict.fromkeys(v for v in values if v is not None))
    if not found:
        return None
    return found[0] if len(found) == 1 else "/".join(map(str, found))


def privacy_utility_frame(
    results: Sequence[Mapping[str, Any]],
    role: str = "nonmember",
    utility: Sequence[str] = ("l1", "psnr", "ssim"),
    tpr_key: str = "tpr_at_1pct_fpr",
    per_seed: bool = False,
    reference_results: Sequence[Mapping[str, Any]] = (),
    multiple_testing: str = "holm",
) -> pd.DataFrame:
    """One row per defense (its seeds aggregated; or per defense and seed), undefended first.

    Args:
        results: results.json contents (see :func:`miabench.results.runs.collect_results`).
        role: whose utility to report (``nonmember``: how well the victim generalises).
        utility: utility metrics to include (missing ones are left empty).
        tpr_key: the attack metric reported beside the AUC.
        per_seed: one row per run instead of one per defense.
        reference_results: ``attack=reference`` runs of the same defenses: each defense's
            row gets :func:`strongest_attack_columns` (empty where a defense has none).
        multiple_testing: ``holm`` or ``bh``: the correction of all the frame's p-values
            (``frame.attrs["n_tests"]`` says how many).

    Returns:
        Columns ``defense``, ``n_seeds``, ``seeds``, ``epsilon``, ``delta``,
        ``noise_multiplier``, ``epochs``, ``n_test_members``, ``n_test_nonmembers``; per
        utility metric ``<role>_<metric>`` (mean over seeds, ``_std``) and
        ``<role>_<metric>_vs_none``; per attack ``<attack>_auc`` and ``<attack>_<tpr_key>``
        (mean, ``_std``, pooled ``_lo``/``_hi``, ``_note``) and their ``_vs_none``
        differences (paired bootstrap on the same seeds and samples: mean over seeds of
        defended − none, ``_std``, ``_lo``, ``_hi``, ``_note``, ``_sig``). The newest result
        per defense and seed is kept.

    Raises:
        ValueError: naming the file, when a result has no ``run.defense``; naming both files,
            when a defense and ``none`` of one seed do not share their test samples.
    """
    for result in results:
        if result["run"].get("defense") is None:
            raise ValueError(f"{result.get('_path', 'a result')}: no run.defense")
    settings, _ = group_seeds(results)
    if per_seed:
        settings = [[run] for runs in settings for run in runs]
    reference = [r for runs in settings for r in runs if r["run"]["defense"] == REFERENCE]
    attacks = sorted({a for runs in settings for r in runs for a in r["attacks"]})
    n_boot, level = bootstrap_settings(results)
    strongest = (
        strongest_attack_columns(reference_results, tpr_key, n_boot, level)
        if reference_results
        else {}
    )
    rows = []
    for runs in settings:
        run = runs[0]["run"]
        defense = run["defense"]
        row = _setting_columns(runs)
        pairs = [] if defense == REFERENCE else _pairs(runs, reference)
        measured = _measured_columns(
            runs, pairs, (role, utility), (attacks, ("auc", tpr_key)), n_boot, level
        )
        row.update(measured)
        found = strongest.get(defense, {})
        # a per-seed row shows the reference run of its own seed only
        if found and not (per_seed and found["reference_seed"] != run.get("seed")):
            row.update(found)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    keys = [(d != REFERENCE, d, s) for d, s in zip(frame["defense"], frame["seeds"], strict=True)]
    order = sorted(range(len(frame)), key=keys.__getitem__)
    frame, n_tests = apply_multiple_testing(
        frame.iloc[order].reset_index(drop=True), multiple_testing
    )
    frame.attrs = {"n_tests": n_tests}
    return frame


def _setting_columns(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a row's runs are: defense, seeds, the defense's report (DP ε, δ, σ), epochs and
    test counts."""
    reports = [r["run"].get("defense_report") or {} for r in runs]
    report = reports[0]
    return {
        "defense": runs[0]["run"]["defense"],
        "n_seeds": len(runs),
        "seeds": seeds_label(runs),
        "epsilon": _unique(rep.get("epsilon") for rep in reports),
        # as text: δ is far below the table's 4 decimals
        "delta": f"{report['delta']:g}" if "epsilon" in report else None,
        "noise_multiplier": report.get("noise_multiplier"),
        "epochs": _unique(r["run"].get("victim_epochs") for r in runs),
        "n_test_members": _unique(
            (i or {}).get("n_test_members") for r in runs for i in r["attacks"].values()
        ),
        "n_test_nonmembers": _unique(
            (i or {}).get("n_test_nonmembers") for r in runs for i in r["attacks"].values()
        ),
    }


def _measured_columns(
    runs: Sequence[Mapping[str, Any]],
    pairs: list[Any],
    utility: tuple[str, Sequence[str]],
    attacks: tuple[Sequence[str], Sequence[str]],
    n_boot: int,
    level: float,
) -> dict[str, Any]:
    """A row's measurements, and (for a defense) each one's paired difference from the
    undefended runs ``pairs``.

    Args:
        utility: ``(role, metrics)``: mean and std over seeds of each utility metric of role.
        attacks: ``(attacks, metrics)``: each attack's metrics over seeds, t-intervals over seeds.
    """
    defended = runs[0]["run"]["defense"] != REFERENCE
    columns: dict[str, Any] = {}
    role, utility_metrics = utility
    for metric in utility_metrics:
        values = [((r.get("utility") or {}).get(role) or {}).get(metric) for r in runs]
        values = [float(v) for v in values if v is not None]
        name = f"{role}_{metric}"
        columns[name] = float(np.mean(values)) if values else None
        columns[f"{name}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        if defended:
            estimate = paired_utility(pairs, role, metric, n_boot, level)
            columns.update(paired_columns(f"{name}_vs_{REFERENCE}", estimate))
    names, metrics = attacks
    for attack in names:
        for metric in metrics:
            name = f"{attack}_{metric}"
            columns.update(estimate_columns(name, seed_estimate(runs, attack, metric)))
            if defended:
                estimate = paired_attack(pairs, attack, metric, n_boot, level)
                columns.update(paired_columns(f"{name}_vs_{REFERENCE}", estimate))
    return columns


def write_privacy_utility(
    table: Mapping[str, Any],
    paths: Iterable[str | os.PathLike],
) -> tuple[Path, Path]:
    """Write ``<name>.md``, ``<name>.csv`` and ``<name>.png`` under ``table["out_dir"]``.

    The ``writer`` of a table config (``make_table`` calls it with the table config and
    the matched result files).

    Args:
        table: the table config: ``name``, ``title``, ``out_dir``, ``command``, and
            optionally ``utility: {role, metrics, plot}``.
        paths: results.json files of the comparison.

    Returns:
        ``(markdown_path, csv_path)``.

    Raises:
        ValueError: when there is no result to tabulate (names the table).
    """
    if OmegaConf.is_config(table):
        table = OmegaConf.to_container(table, resolve=True)
    paths = list(paths)
    results = collect_results(paths)
    if not results:
        raise ValueError(f"table {table['name']}: no results.json matched {table.get('results')}")
    spec = dict(table.get("utility") or {})
    role = spec.get("role", "nonmember")
    metrics = list(spec.get("metrics", ["l1", "psnr", "ssim"]))
    # the reference-model runs of the same defenses (best reference attack per defense)
    reference_paths = result_paths(list((table.get("reference") or {}).get("results") or []))
    reference = collect_results(reference_paths)
    method = str(table.get("multiple_testing", "holm"))
    frame = privacy_utility_frame(
        results, role=role, utility=metrics, reference_results=reference, multiple_testing=method
    )
    per_seed = privacy_utility_frame(
        results,
        role=role,
        utility=metrics,
        per_seed=True,
        reference_results=reference,
        multiple_testing=method,
    )
    out_dir = Path(table["out_dir"])
    name = table["name"]
    plot_column = f"{role}_{spec.get('plot', metrics[0])}"
    plot_privacy_utility(frame, out_dir / f"{name}.png", plot_column, table["title"])
    superseded = group_seeds(results)[1]
    notes = [
        f"Regenerate: `{table.get('command', '')}`",
        f"Result files: {len(paths)} ({len(superseded)} older result(s) of the same defense "
        "and seed left out); every seed kept",
        f"Utility on {role}s, measured on the victim's raw outputs (mean ± std over seeds); "
        "AUC and TPR at 1 % FPR on the test half of members and non-members.",
        f"_vs_{REFERENCE}: difference from the undefended victim on the same seed and samples "
        "(defense − none). A defense that trains its own victims: mean of the per-seed "
        "differences with the paired t-test and t-interval over seeds (Dietterich 1998; "
        "training randomness counted; one seed: shown, not tested). A post-hoc defense on "
        "the undefended victim (same victim_key, e.g. output truncation): paired bootstrap of "
        f"the test samples (or of the {role}s for utility), one resample applied to both, "
        f"p = (1 + count) / (B + 1) with B ≥ {P_VALUE_REPLICATES}.",
        "epsilon: DP-SGD's ε at the given δ (Opacus RDP accountant), empty for non-DP defenses.",
        f"Plot: `{name}.png` ({plot_column} vs AUC, bars: t-interval over seeds).",
        f"One row per seed: `{name}_per_seed.md` / `.csv`.",
        INTERVAL_LEGEND,
    ]
    if reference:
        spec_ref = table["reference"]
        notes[1:1] = [
            f"Reference-model runs: {len(reference_paths)} "
            f"(`{spec_ref.get('command', '')}`). best_reference_*: per defense, the "
            "reference attack (LiRA / RMIA, online / offline, dense LiRA) with the highest "
            "leave-one-out TPR at 1 % FPR (then AUC) on that defense's reference run; "
            "reference_free_*: the same run's reference-free attack (the target's own error) "
            "on the same (sample, model) pairs; both pooled over every model of the run as "
            "the target, whole samples resampled for the interval. The best attack is chosen "
            "on the samples whose id's SHA-256 starts with an even byte and every column is "
            "measured on the others (reference_selection), so the choice does not favour it. "
            "best_vs_free_*: paired bootstrap of best − reference-free on the same pairs. "
            + str(spec_ref.get("note", "")),
        ]
    notes += grouping_lines(describe_grouping(results), out_dir)
    for rows, stem, title in (
        (per_seed, f"{name}_per_seed", f"{table['title']} (one row per seed)"),
        (frame, name, table["title"]),
    ):
        csv_path = atomic_write(out_dir / f"{stem}.csv", lambda p, f=rows: f.to_csv(p, index=False))
        shown = [*notes, multiple_testing_note(method, rows.attrs.get("n_tests", 0))]
        lines = [f"# {title}", "", to_markdown(markdown_view(rows)), "", *(f"- {n}" for n in shown)]
        md_path = atomic_write_text(out_dir / f"{stem}.md", "\n".join(lines) + "\n")
    return md_path, csv_path
