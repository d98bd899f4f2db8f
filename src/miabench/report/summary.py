"""The plain-language part of a report: the headline sentence, the audit's limits, and
what was audited, all from the numbers results.json records (never recomputed here).

The headline follows docs/statistics.md: at a false-alarm rate the test can resolve (at
least :data:`~miabench.metrics.roc.MIN_NONMEMBERS_PER_FPR` / x non-members) it gives the
recorded TPR at FPR x with its bootstrap interval; below that it gives the operating point
the test reaches (``tpr_at_<x>pct_fpr_reached``) with its exact interval and says why the
nominal figure is not reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from miabench.metrics.roc import MIN_NONMEMBERS_PER_FPR, ci_key, tpr_key
from miabench.report.records import find_hashes
from miabench.results.estimates import fpr_of

#: the false-alarm rate of the headline, when the run recorded it
HEADLINE_FPR = 0.01


def pct(value: float | None, digits: int = 1) -> str:
    """``0.78125 -> "78.1 %"``, ``0.00025 -> "0.025 %"`` (small rates keep two significant
    digits rather than print as 0.0 %); ``None -> "n/a"``."""
    if value is None:
        return "n/a"
    percent = 100 * float(value)
    if 0 < abs(percent) < 10 ** (-digits):
        return f"{percent:.2g} %"
    return f"{percent:.{digits}f} %"


def method_name(method: str | None) -> str:
    """A recorded interval method as the report prints it (``bca`` -> ``BCa``)."""
    return {"bca": "BCa", None: "bootstrap"}.get(method, str(method))


def recorded_fprs(info: Mapping[str, Any]) -> list[float]:
    """The FPRs whose TPRs an attack's entry records, highest first."""
    return sorted({f for f in map(fpr_of, info) if f is not None}, reverse=True)


def headline_fpr(info: Mapping[str, Any]) -> float | None:
    """:data:`HEADLINE_FPR` when recorded, else the highest recorded FPR (None: none)."""
    fprs = recorded_fprs(info)
    return HEADLINE_FPR if HEADLINE_FPR in fprs else (fprs[0] if fprs else None)


def _strength(info: Mapping[str, Any], fpr: float | None) -> tuple[float, float]:
    key = tpr_key(fpr) if fpr is not None else None
    tpr = info.get(key) if key else None
    if tpr is None and key:
        tpr = info.get(f"{key}_reached")
    return (float(tpr) if tpr is not None else -1.0, float(info.get("auc", 0.0)))


def strongest_attack(attacks: Mapping[str, Mapping[str, Any]]) -> str:
    """The attack with the highest TPR at the headline FPR (nominal where observable, else
    at the reached point), then the highest AUC."""
    return max(attacks, key=lambda name: _strength(attacks[name], headline_fpr(attacks[name])))


def operating_point(info: Mapping[str, Any], fpr: float) -> dict[str, Any]:
    """What the run records at ``fpr``: nominal (observable) or reached, with interval,
    counts and the method of the interval."""
    key = tpr_key(fpr)
    level = float(info.get("ci_level") or 0.95)
    n_pos, n_neg = int(info["n_test_members"]), int(info["n_test_nonmembers"])
    if info.get(key) is not None:
        low, high = info.get(ci_key(key, level)) or (None, None)
        method = method_name((info.get("ci_method") or {}).get(ci_key(key, level)))
        return {
            "observable": True,
            "key": key,
            "fpr": fpr,
            "tpr": float(info[key]),
            "low": low,
            "high": high,
            "method": f"{method} bootstrap",
            "level": level,
            "n_members": n_pos,
            "n_nonmembers": n_neg,
        }
    reached = f"{key}_reached"
    hits, _, k, _ = info.get(f"{reached}_counts") or (None, n_pos, None, n_neg)
    low, high = info.get(ci_key(reached, level)) or (None, None)
    fpr_low, fpr_high = info.get(ci_key(f"{reached}_fpr", level)) or (None, None)
    return {
        "observable": False,
        "key": reached,
        "fpr": fpr,
        "tpr": info.get(reached),
        "reached_fpr": info.get(f"{reached}_fpr"),
        "low": low,
        "high": high,
        "fpr_low": fpr_low,
        "fpr_high": fpr_high,
        "method": "Clopper–Pearson",
        "level": level,
        "hits": hits,
        "false_positives": k,
        "n_members": n_pos,
        "n_nonmembers": n_neg,
        "needed": MIN_NONMEMBERS_PER_FPR / fpr,
        "note": info.get(f"{key}_note"),
    }


def headline(attacks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The strongest attack with its AUC and the operating point of the headline sentence
    (rendered by the template), or None when no attack recorded a TPR at low FPR."""
    name = strongest_attack(attacks)
    info = attacks[name]
    fpr = headline_fpr(info)
    if fpr is None:
        return None
    level = float(info.get("ci_level") or 0.95)
    auc_low, auc_high = info.get(ci_key("auc", level)) or (None, None)
    return {
        "attack": name,
        "point": operating_point(info, fpr),
        "auc": float(info["auc"]),
        "auc_low": auc_low,
        "auc_high": auc_high,
        "auc_method": method_name((info.get("ci_method") or {}).get(ci_key("auc", level))),
        "n_attacks": len(attacks),
    }


def audited(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What was audited, as (label, value) rows: model, data, split, hashes, commit, seeds."""
    run = result["run"]
    prov = run.get("provenance") or {}
    git = prov.get("git") or {}
    rows = [
        (
            "model",
            f"{run.get('victim')} (victim key {run.get('victim_key', 'n/a')}, "
            f"{run.get('victim_epochs', 'n/a')} epochs)",
        ),
        ("defense", str(run.get("defense", "none"))),
        (
            "data",
            f"{run.get('dataset')} ({run.get('data_root')}, {run.get('image_size')} px, "
            f"direction {run.get('direction')})",
        ),
        (
            "membership split",
            f"{run.get('n_members')} members, {run.get('n_nonmembers')} non-members",
        ),
    ]
    hashes = find_hashes(run.get("victim_info") or {}, "victim_info.")
    for name, info in (result.get("attacks") or {}).items():
        hashes.update(find_hashes(info.get("describe") or {}, f"attacks.{name}."))
    if run.get("manifest_sha256"):
        rows.append(("split manifest sha256", str(run["manifest_sha256"])))
    if hashes:
        rows += [(f"{key}", value) for key, value in sorted(hashes.items())]
    else:
        rows.append(
            (
                "weights sha256",
                "none recorded: no weight file was read (the victim was "
                "trained by miabench; backbones with weights: none)",
            )
        )
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    rows.append(("code commit", f"{git.get('commit', 'not recorded')}{dirty}"))
    if run.get("rescored"):
        rescored = run["rescored"]
        rows.append(
            (
                "metrics rescored at",
                f"{(rescored.get('git') or {}).get('commit')} "
                f"({rescored.get('at')}, {rescored.get('command')})",
            )
        )
    seeds = {
        f"attacks.{n}.seed": i["describe"]["seed"]
        for n, i in result["attacks"].items()
        if isinstance(i.get("describe"), Mapping) and "seed" in i["describe"]
    }
    rows.append(
        (
            "seeds",
            ", ".join([f"run {run.get('seed')}", *(f"{k} {v}" for k, v in sorted(seeds.items()))]),
        )
    )
    packages = prov.get("packages") or {}
    if packages:
        rows.append(("packages", ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))))
    rows.append(("device", f"{prov.get('device', 'n/a')}, python {prov.get('python', 'n/a')}"))
    return rows


def limits(result: Mapping[str, Any], seeds: Sequence[Any] | None = None) -> list[str]:
    """The audit's limits in plain words: attacks and threat model tried, sample sizes,
    seeds (``seeds``: those of a table's setting; default the run's own), selection of the
    strongest attack, data."""
    run, attacks = result["run"], result["attacks"]
    first = next(iter(attacks.values()))
    names = ", ".join(
        f"{n} ({(i.get('describe') or {}).get('class', 'attack')})" for n, i in attacks.items()
    )
    view = run.get("attacker_view")
    out = [
        f"Attacks tried: {names}. No other attack was run, so these figures are a lower "
        "bound on what an attacker could achieve (reference-model attacks such as LiRA or "
        "RMIA can be stronger).",
        "Threat model: the attacker queries the model with each audited image, sees its "
        + ("output after the defense's attacker view " + str(view) if view else "output")
        + f", and fits its threshold on {first.get('n_calibration', 'n/a')} labelled "
        "samples of the same split (a calibration half disjoint from the test half).",
        f"Test half: {first['n_test_members']} members and {first['n_test_nonmembers']} "
        f"non-members. A TPR at false-alarm rate x is reported only with at least "
        f"{MIN_NONMEMBERS_PER_FPR}/x non-members; this test resolves x ≥ "
        f"{pct(MIN_NONMEMBERS_PER_FPR / max(first['n_test_nonmembers'], 1))}.",
    ]
    if seeds and len(seeds) > 1:
        out.append(
            f"{len(seeds)} trained models per setting (seeds {', '.join(map(str, seeds))}): a "
            "table's intervals over seeds include training randomness; a single run's "
            "intervals cover the choice of test samples only."
        )
    else:
        out.append(
            f"One trained model (seed {run.get('seed')}): the intervals cover the choice of "
            "test samples, not the randomness of training."
        )
    if len(attacks) > 1:
        out.append(
            "The strongest attack is picked on the same test samples it is measured on, "
            "so its figures are slightly optimistic."
        )
    if run.get("manifest_sha256"):
        out.append(
            "Membership was drawn at random by miabench's split (not declared by a model "
            "owner), so the audit measures average leakage over that draw."
        )
    if run.get("data_root") == "embedded":
        out.append(
            f"Data: the embedded stand-in dataset {run.get('dataset')} built offline, not the "
            "published dataset; figures do not transfer to a model trained on other data."
        )
    ties = [n for n, i in attacks.items() if i.get("ties_note")]
    if ties:
        out.append(f"Heavy score ties for {', '.join(ties)}: see each attack's note.")
    return out
