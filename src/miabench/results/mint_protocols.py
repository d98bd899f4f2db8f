"""MINT protocols side by side: control, published (other source), by sample.

One row per protocol and auditor, each beside the same auditors on the never-trained victim,
over seeds (``table=mint_protocols``); the cells are read from the same MINT auditor runs as
:mod:`miabench.results.mint_table`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from miabench.results.markdown import interval_cell, to_markdown
from miabench.results.mint_table import DIAGNOSTIC, ROWS, _intervals, is_untrained
from miabench.results.runs import collect_results
from miabench.utils.io import atomic_write, atomic_write_text

#: cells of :func:`protocol_cells`
PROTOCOL_COLUMNS = (
    "protocol",
    "seed",
    "victim",
    "auditor",
    "accuracy",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "ci_unit",
    "n_test",
    "n_test_groups",
    "victim_key",
)


def auditor_label(describe: Mapping[str, Any]) -> str | None:
    """``mlp model_outcome``, ``cnn conv_layer_2``, ``nearest_identity``; None for others."""
    kind = str(describe.get("class", ""))
    if kind.endswith("IdentityProximityAuditor"):
        return DIAGNOSTIC
    if kind.endswith("MintAuditor"):
        layers = tuple(describe["layers"])
        return f"{describe['arch']} {ROWS.get(layers, '+'.join(layers))}"
    return None


def protocol_cells(
    results: Sequence[Mapping[str, Any]], protocols: Mapping[str, str]
) -> pd.DataFrame:
    """One row per (protocol, seed, trained or never-trained victim, auditor).

    Args:
        results: results.json contents.
        protocols: ``run.data_name`` → protocol label; runs of other data are left out.

    Raises:
        ValueError: two runs fill the same cell (naming both victim keys).
    """
    rows: dict[tuple[str, int, str, str], dict[str, Any]] = {}
    for result in results:
        run = result["run"]
        protocol = protocols.get(str(run.get("data_name")))
        if protocol is None:
            continue
        victim = "never-trained" if is_untrained(result) else "trained"
        for metrics in result.get("attacks", {}).values():
            label = auditor_label(metrics.get("describe", {}))
            if label is None:
                continue
            key = (protocol, int(run["seed"]), victim, label)
            auc_ci, _, unit = _intervals(metrics)
            cell = {
                "protocol": protocol,
                "seed": int(run["seed"]),
                "victim": victim,
                "auditor": label,
                "accuracy": metrics.get("accuracy_at_decision"),
                "auc": metrics.get("auc"),
                "auc_ci_low": auc_ci[0],
                "auc_ci_high": auc_ci[1],
                "ci_unit": unit,
                "n_test": metrics.get("n_test"),
                "n_test_groups": metrics.get("n_test_groups"),
                "victim_key": run.get("victim_key"),
            }
            if key in rows:
                raise ValueError(
                    f"two runs fill protocol cell {key}: victims {rows[key]['victim_key']} and "
                    f"{cell['victim_key']}; narrow table.results"
                )
            rows[key] = cell
    return pd.DataFrame(list(rows.values()), columns=list(PROTOCOL_COLUMNS))


def seed_summary(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean, sample standard deviation and the t-interval of the mean over seeds.

    Written with scipy's Student t quantile: with 3 seeds the interval is the mean ± 4.30
    standard errors, wide on purpose (three draws say little about the spread).
    """
    from scipy import stats  # noqa: PLC0415 - only this summary needs scipy

    x = pd.Series(values, dtype=float).dropna().to_numpy()
    if len(x) == 0:
        return {
            "mean": float("nan"),
            "sd": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
            "n": 0,
        }
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "sd": float("nan"), "low": float("nan"), "high": float("nan"), "n": 1}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * sd / len(x) ** 0.5
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "n": len(x)}


def protocol_summary(cells: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Per protocol and auditor: the trained and never-trained AUC over seeds (mean ± sd
    [t-interval]), their per-seed difference (what training adds), and mean accuracies."""
    rows = []
    auditors = sorted(cells.auditor.unique(), key=lambda a: (a == DIAGNOSTIC, a))
    for protocol in order:
        for auditor in auditors:
            here = cells[(cells.protocol == protocol) & (cells.auditor == auditor)]
            if here.empty:
                continue
            trained = here[here.victim == "trained"].set_index("seed")
            control = here[here.victim == "never-trained"].set_index("seed")
            both = trained.index.intersection(control.index)
            gain = (trained.auc[both] - control.auc[both]).tolist()
            row: dict[str, Any] = {"protocol": protocol, "auditor": auditor}
            for name, frame in (("trained", trained), ("never-trained", control)):
                s = seed_summary(frame.auc.tolist())
                # an AUC lies in [0, 1]; the t-interval of three seeds near 1 would not
                low, high = max(0.0, s["low"]), min(1.0, s["high"])
                row[f"{name} auc"] = interval_cell(s["mean"], low, high, std=s["sd"])
                row[f"{name} accuracy"] = frame.accuracy.mean() if len(frame) else None
            s = seed_summary(gain)
            row["training adds (auc)"] = interval_cell(s["mean"], s["low"], s["high"], std=s["sd"])
            row["seeds"] = f"{len(trained)}/{len(control)}"
            rows.append(row)
    return pd.DataFrame(rows)


def write_mint_protocol_table(table: Any, paths: Sequence[Path]) -> tuple[Path, Path]:
    """Write ``<name>.md`` (summary over seeds, then every seed's cells) and ``<name>.csv``.

    ``table``: ``name``, ``title``, ``out_dir``, ``command``, ``protocols`` (``data_name`` →
    label, in display order), optional ``include_victims`` and ``notes``.
    """
    results = collect_results(paths)
    if table.get("include_victims"):
        results = [r for r in results if r["run"]["victim"] in table.include_victims]
    protocols = {str(k): str(v) for k, v in table.protocols.items()}
    cells = protocol_cells(results, protocols)
    order = list(dict.fromkeys(protocols.values()))
    summary = protocol_summary(cells, order)
    per_seed = cells.copy()
    per_seed["n_test_groups"] = per_seed.n_test_groups.astype("Int64")
    per_seed["auc [95% CI]"] = per_seed.apply(
        lambda c: interval_cell(c.auc, c.auc_ci_low, c.auc_ci_high), axis=1
    )
    per_seed["protocol"] = pd.Categorical(per_seed.protocol, categories=order, ordered=True)
    per_seed = per_seed.sort_values(["protocol", "auditor", "victim", "seed"])
    shown = per_seed[
        [
            "protocol",
            "auditor",
            "victim",
            "seed",
            "accuracy",
            "auc [95% CI]",
            "ci_unit",
            "n_test",
            "n_test_groups",
        ]
    ]
    lines = [
        f"# {table.title}",
        "",
        "## AUC over seeds: trained victim, never-trained victim, and the difference",
        "",
        "Each cell: mean ± standard deviation over the seeds [95 % t-interval of the mean]. "
        "*training adds* is the per-seed difference trained − never-trained (same seed: same "
        "identities, split and auditor halves). Accuracy: the auditor's own 0.5 decision "
        "(the paper's metric), mean over seeds.",
        "",
        to_markdown(summary),
        "",
        "## Every seed",
        "",
        "AUC with its 95 % bootstrap interval, resampling whole test identities (ci_unit "
        "group) or, where every identity holds both roles (by sample), test images (ci_unit "
        "sample; too narrow, as images of one identity are not independent).",
        "",
        to_markdown(shown.reset_index(drop=True)),
        "",
    ]
    lines += [f"- {note}" for note in table.get("notes") or []]
    lines += [f"- Regenerate: `{table.command}`", f"- Result files: {len(paths)}", ""]
    out = Path(table.out_dir)
    md = atomic_write_text(out / f"{table.name}.md", "\n".join(lines))
    csv = atomic_write(out / f"{table.name}.csv", lambda p: cells.to_csv(p, index=False))
    return md, csv
