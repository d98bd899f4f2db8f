"""The server's own list of models: attack folders, read and summarised once at start.

An attack folder (``<output_dir>/attacks/<run id>/``, written by ``python -m
miabench.run_attack``) holds ``results.json`` (metrics, provenance), ``scores.csv`` (every
sample's score, role and calibration/test half) and ``utility.csv``. The server serves the
folders it is started with, or every attack folder under the outputs root the other apps
write to (``paths.output_dir``: ``attacks/*`` and ``*/attacks/*``). Clients name a model by
its id (the folder name) and only ids of this list are ever looked up: no client string
reaches the filesystem.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miabench.results.mint_table import is_untrained
from miabench.results.runs import measured_overrides
from miabench.utils.io import CorruptFileError, read_json

log = logging.getLogger(__name__)

#: where attack folders sit under the outputs root (the default and the experiments' own)
FOLDER_PATTERNS = ("attacks/*/results.json", "*/attacks/*/results.json")
#: the audit report another app writes beside results.json (linked when present)
REPORT_FILE = "report.html"
#: the FPR of the models page's TPR column
TPR_FPR_KEY = "tpr_at_1pct_fpr"


class ModelError(ValueError):
    """An attack folder the server cannot serve (the message names the file and why)."""


def _interval(metrics: Mapping[str, Any], key: str) -> list[float] | None:
    value = metrics.get(f"{key}_ci95")
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else None


def attack_summary(name: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One attack's AUC and TPR at 1 % FPR with intervals and counts (test half)."""
    return {
        "attack": name,
        "auc": metrics.get("auc"),
        "auc_interval": _interval(metrics, "auc"),
        "tpr_at_1pct_fpr": metrics.get(TPR_FPR_KEY),
        "tpr_at_1pct_fpr_interval": _interval(metrics, TPR_FPR_KEY),
        "tpr_at_1pct_fpr_note": metrics.get(f"{TPR_FPR_KEY}_note"),
        "n_test_members": metrics.get("n_test_members"),
        "n_test_nonmembers": metrics.get("n_test_nonmembers"),
        "interval_level": metrics.get("ci_level"),
        "bootstrap_unit": metrics.get("bootstrap_unit", "sample"),
    }


def strongest_attack(result: Mapping[str, Any]) -> str:
    """The attack with the highest test AUC (ties: the first by name)."""
    attacks = result.get("attacks") or {}
    scored = [(float(m["auc"]), n) for n, m in sorted(attacks.items()) if m.get("auc") is not None]
    if not scored:
        raise ModelError("results.json: no attack with an AUC")
    return max(scored, key=lambda pair: pair[0])[1]


@dataclass
class ModelEntry:
    """One servable attack folder and what the models page says about it.

    Attributes:
        id: the folder name (the run id), what clients name.
        folder: the attack folder.
        result: its results.json.
        attack: the attack served (the strongest unless ``serve.attack`` names one).
        control: the same attack's summary on a never-trained victim of the same setting,
            when such a run is in the outputs.
    """

    id: str
    folder: Path
    result: dict[str, Any]
    attack: str
    control: dict[str, Any] | None = None
    caveats: list[str] = field(default_factory=list)

    @property
    def run(self) -> dict[str, Any]:
        return self.result["run"]

    @property
    def report(self) -> Path | None:
        """The folder's HTML audit report, when one has been written."""
        path = self.folder / REPORT_FILE
        return path if path.is_file() else None

    def summary(self, weights_sha256: str | None) -> dict[str, Any]:
        """What ``GET /api/models`` and the models page show."""
        run = self.run
        return {
            "id": self.id,
            "task": f"{run.get('victim')} victim ({run.get('direction') or 'no direction'})",
            "victim": run.get("victim"),
            "data": run.get("dataset"),
            "defense": run.get("defense"),
            "seed": run.get("seed"),
            "n_members": run.get("n_members"),
            "n_nonmembers": run.get("n_nonmembers"),
            "weights_sha256": weights_sha256,
            "commit": ((run.get("provenance") or {}).get("git") or {}).get("commit"),
            "served_attack": self.attack,
            "strongest_attack": attack_summary(
                strongest_attack(self.result), self.result["attacks"][strongest_attack(self.result)]
            ),
            "attack": attack_summary(self.attack, self.result["attacks"][self.attack]),
            "never_trained_control": self.control,
            "report": f"/models/{self.id}/report" if self.report else None,
            "caveats": list(self.caveats),
        }


def servable(result: Mapping[str, Any]) -> str | None:
    """Why a results.json cannot be served (None when it can)."""
    if "leave_one_out" in result or "target" in result:
        return "a reference-model run (its scores need the reference models' signals)"
    if not (result.get("run") or {}).get("victim_dir"):
        return "results.json records no victim_dir"
    return None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        result = read_json(path)
    except (OSError, ValueError, CorruptFileError) as err:
        log.warning("skipped %s: %s", path, err)
        return None
    if not isinstance(result, dict) or not isinstance(result.get("run"), dict):
        log.warning("skipped %s: not a run's results.json (no 'run' block)", path)
        return None
    return result


def _setting(result: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a trained run and its never-trained control share: everything measured but the
    training length."""
    run = result["run"]
    overrides = [o for o in measured_overrides(run) if not o.startswith("trainer.max_epochs=")]
    return (
        run.get("victim"),
        run.get("data_name"),
        run.get("defense"),
        run.get("seed"),
        *overrides,
    )


def find_controls(entry: ModelEntry, results: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The served attack's summary on a never-trained run of ``entry``'s setting, if any."""
    if is_untrained(entry.result):
        return None
    for result in results:
        if is_untrained(result) and _setting(result) == _setting(entry.result):
            metrics = (result.get("attacks") or {}).get(entry.attack)
            if metrics is not None:
                summary = attack_summary(entry.attack, metrics)
                summary["run"] = Path(result["_path"]).parent.name
                return summary
    return None


def find_models(
    output_dir: Path, folders: Sequence[str | Path] = (), attack: str | None = None
) -> dict[str, ModelEntry]:
    """The server's models: the named attack folders, or every one under ``output_dir``.

    Args:
        output_dir: the outputs root (``paths.output_dir``).
        folders: attack folders to serve (``serve.models``); empty: all under ``output_dir``.
        attack: the attack to serve in every model; None: each model's strongest.

    Raises:
        ModelError: a named folder has no readable results.json, cannot be served, or lacks
            ``attack``; two folders share a name.
    """
    found = sorted(p for pattern in FOLDER_PATTERNS for p in Path(output_dir).glob(pattern))
    named = [Path(f) / "results.json" for f in folders]
    for path in named:
        if not path.is_file():
            raise ModelError(f"serve.models: {path} does not exist (an attack folder's results)")
    everything: list[dict[str, Any]] = []
    for path in dict.fromkeys(found + named):
        result = _read(path)
        if result is not None:
            result["_path"] = str(path)
            everything.append(result)
    chosen = [r for r in everything if not named or Path(r["_path"]) in named]
    if named and len(chosen) < len(named):
        raise ModelError(f"serve.models: unreadable results among {[str(p) for p in named]}")
    models: dict[str, ModelEntry] = {}
    for result in chosen:
        path = Path(result["_path"])
        why = servable(result)
        if why is not None:
            if named:
                raise ModelError(f"{path}: cannot be served: {why}")
            log.info("not served: %s (%s)", path.parent, why)
            continue
        name = attack or strongest_attack(result)
        if name not in result["attacks"]:
            raise ModelError(
                f"{path}: no attack {name!r} (serve.attack); has {sorted(result['attacks'])}"
            )
        model_id = path.parent.name
        if model_id in models:
            raise ModelError(
                f"two attack folders are named {model_id}: {models[model_id].folder}, {path.parent}"
            )
        entry = ModelEntry(model_id, path.parent, result, name)
        entry.control = find_controls(entry, everything)
        models[model_id] = entry
    return models
