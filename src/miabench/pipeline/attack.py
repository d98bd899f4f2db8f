"""Stage 2: score members and non-members of a cached victim with each attack."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig

from miabench.attacks.base import Attack
from miabench.defenses.setting import DefenseSetting
from miabench.metrics.utility import summarize
from miabench.pipeline.code_hash import attack_code_version
from miabench.pipeline.halves import ROLES, Halves, split_halves
from miabench.pipeline.imported import import_victim
from miabench.pipeline.logging_hooks import log_results
from miabench.pipeline.record import describe_run, held_out_metrics, provenance, write_csv
from miabench.pipeline.run_id import RunId
from miabench.pipeline.train import TrainedVictim, locate_victim
from miabench.results.plots import plot_roc
from miabench.utils.config import to_container
from miabench.utils.device import select_device
from miabench.utils.hashing import stable_hash
from miabench.utils.io import atomic_write_json, read_json, verified_exists
from miabench.utils.locks import cache_lock_dir, locked
from miabench.utils.provenance import StageClock, now_iso
from miabench.victims.base import QUERY, Signals, Victim

log = logging.getLogger(__name__)

#: key of the victim's benchmark utility in ``utility_dataset.json`` (beside the roles)
BENCHMARK = "benchmark"


def attack_dir(cfg: DictConfig, victim: TrainedVictim) -> Path:
    """Output folder of one victim's attacks: readable prefix + hash of what shaped them.

    The hash covers the victim's key, the attack and evaluation settings, and the code of
    the attacks and metrics (:func:`~miabench.pipeline.code_hash.attack_code_version`), so a
    change in ``attacks/`` or ``metrics/`` never returns scores computed by older code.
    """
    parts = {
        "victim": victim.key["key"],
        "attack": to_container(cfg.attack),
        "code": attack_code_version(cfg),
        "evaluation": {k: v for k, v in to_container(cfg.evaluation).items() if k != "device"},
    }
    verification = cfg.data.get("verification")
    if verification is not None:
        # evaluation-only pairs are not in the victim key, but the results report them: a run
        # with them must not reuse results written without them (unset: key as before)
        parts["verification"] = to_container(verification)
    return Path(cfg.paths.output_dir) / "attacks" / str(RunId.of(cfg, stable_hash(parts)))


def _loaders(victim: TrainedVictim) -> dict[str, Any]:
    dm = victim.datamodule
    return {"member": dm.member_dataloader(), "nonmember": dm.nonmember_dataloader()}


def _collect(
    model: Victim,
    victim: TrainedVictim,
    device: torch.device,
    fn: Any,
    desc: str,
    on_role: Any = None,
) -> pd.DataFrame:
    """Run ``fn(signals) -> {column: (B,) tensor}`` over members and non-members.

    ``on_role(role, signals_iterator)``, when given, wraps each role's signal stream (used to
    accumulate dataset-level metrics in the same pass).
    """
    rows: list[pd.DataFrame] = []
    for role, loader in _loaders(victim).items():
        stream = model.iter_signals(loader, device=device, desc=f"{desc} [{role}]")
        if on_role is not None:
            stream = on_role(role, stream)
        for signals in stream:
            # float64: the CSV then holds each float32 value exactly, so a rerun that reads the
            # cached file back computes the same metrics to the last digit
            columns = {k: v.detach().double().cpu().numpy() for k, v in fn(signals).items()}
            frame = pd.DataFrame({"sample_id": signals["sample_id"], "role": role, **columns})
            rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def _plain(value: Any) -> Any:
    """torchmetrics results (tensors, dicts of tensors) → JSON-friendly Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if torch.is_tensor(value):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    return value


def _utility(
    model: Victim, victim: TrainedVictim, device: torch.device, out: Path
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Per-sample utility (``utility.csv``) and dataset-level utility metrics
    (``utility_dataset.json``) of members and non-members, computed in one pass and cached.

    A victim with a ``benchmark_utility(datamodule, device)`` method (e.g. LFW verification
    of a face recogniser) is also scored once on the data module's evaluation-only benchmark;
    a non-empty result is stored under ``BENCHMARK`` beside the roles.
    """
    per_sample_path, dataset_path = out / "utility.csv", out / "utility_dataset.json"
    if verified_exists(per_sample_path) and verified_exists(dataset_path):
        return pd.read_csv(per_sample_path), read_json(dataset_path)
    computed: dict[str, dict[str, Any]] = {}

    def accumulate(role: str, stream: Any) -> Any:
        metrics = {k: m.to(device) for k, m in model.utility_metrics().items()}
        for signals in stream:
            model.update_utility_metrics(metrics, signals)
            yield signals
        computed[role] = {k: _plain(m.compute()) for k, m in metrics.items()}

    frame = _collect(model, victim, device, model.utility, desc="utility", on_role=accumulate)
    benchmark = _plain(model.benchmark_utility(victim.datamodule, device))
    if benchmark:
        computed[BENCHMARK] = benchmark
    write_csv(per_sample_path, frame)
    atomic_write_json(dataset_path, computed, checksum=True)
    return frame, computed


def _attacker_view(cfg: DictConfig) -> Any:
    """The defense's post-hoc transform of what the attacker sees (output truncation), or None.

    It applies to the signals given to attacks only; utility is measured on the raw outputs.
    """
    return DefenseSetting.of(cfg).attacker_view()


def attacker_signals(signals: Signals, view: Any) -> Signals:
    """What the attacker sees of one batch: ``view(signals)``, and the ``query`` black box
    (label-only attacks' own queries) answering through the same view, so no attack sees
    more of a defended victim's answers than the defense lets out."""
    if view is None:
        return signals
    seen = view(signals)
    query = signals.get(QUERY)
    if query is not None:
        seen[QUERY] = lambda images: view(query(images))
    return seen


def hidden_attacks(attacks: dict[str, Attack], view: Any) -> dict[str, str]:
    """The attacks that read a signal the attacker view removes (``view.hides``: e.g. the
    detector's loss, which a deployment returning boxes only never gives), with why."""
    hides = set(getattr(view, "hides", ()) or ())
    return {
        name: f"reads {sorted(hides & set(attack.requires))}, which the defense's attacker "
        "view does not show"
        for name, attack in attacks.items()
        if hides & set(attack.requires)
    }


def _fit_batches(
    model: Victim,
    victim: TrainedVictim,
    device: torch.device,
    calibration: dict[str, list[str]],
    view: Any,
) -> Any:
    """Factory of fresh ``(signals, labels)`` iterators over the calibration half."""
    dm = victim.datamodule

    def batches() -> Any:
        streams = {
            role: model.iter_signals(
                dm.role_dataloader(role, ids), device=device, desc=f"fit [{role}]"
            )
            for role, ids in calibration.items()
            if ids
        }
        # Interleave members and non-members so a streaming learner sees both classes early.
        while streams:
            for role in list(streams):
                signals = next(streams[role], None)
                if signals is None:
                    del streams[role]
                    continue
                signals = attacker_signals(signals, view)
                n = len(signals["sample_id"])
                yield signals, torch.full((n,), float(ROLES[role]), device=device)

    return batches


def _prepare_attacks(attacks: list[Attack], model: Victim, device: torch.device) -> None:
    """Check that the victim provides what ``attacks`` read, have it compute those signals
    (and only those: victims with optional signals, e.g. named-layer activations), and move
    the attacks to ``device``."""
    for attack in attacks:
        attack.check_signals(model.provides)
    model.select_signals(tuple(dict.fromkeys(s for attack in attacks for s in attack.requires)))
    for attack in attacks:
        attack.setup(device)


def _attack_scores(
    name: str,
    attack: Attack,
    model: Victim,
    victim: TrainedVictim,
    device: torch.device,
    out: Path,
    view: Any = None,
    calibration: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Scores of one attack, read back from disk when an earlier run finished them.

    A trainable attack is fitted on the ``calibration`` ids first; every sample is scored,
    and the metrics use the test half only.
    """
    path = out / f"scores_{name}.csv"
    if verified_exists(path):
        if path in _SCORED_IN_ONE_PASS:
            # written moments ago by the shared pass of this run: not a reuse
            _SCORED_IN_ONE_PASS.discard(path)
        else:
            log.info("reusing scores of %s from %s (an earlier run finished them)", name, path)
        return pd.read_csv(path)
    _prepare_attacks([attack], model, device)
    if attack.trainable:
        if not calibration or not all(calibration.get(role) for role in ROLES):
            raise ValueError(
                f"attack '{name}' learns from a calibration half, but evaluation."
                "calibration_fraction leaves it without members or non-members"
            )
        attack.fit(_fit_batches(model, victim, device, calibration, view))

    def score(signals: Any) -> Any:
        return attack.score(attacker_signals(signals, view))

    frame = _collect(model, victim, device, score, desc=name)
    write_csv(path, frame)
    return frame


def _instantiate_attacks(cfg: DictConfig) -> dict[str, Attack]:
    """The attacks ``cfg.attack`` selects, by name (entries without ``_target_`` skipped)."""
    attacks: dict[str, Attack] = {}
    for name, spec in cfg.attack.items():
        if spec is None or "_target_" not in spec:
            # e.g. an experiment tunes membership_error while `attack=reconstruction` selects
            # only the other one: the leftover settings name no attack to run.
            log.warning("attack.%s has no _target_ (not selected); skipped", name)
            continue
        attacks[name] = instantiate(spec, name=name)
    return attacks


#: scores_<name>.csv files the shared pass of this process wrote (so reading them back is not
#: logged as reusing an earlier run's scores)
_SCORED_IN_ONE_PASS: set[Path] = set()


def _score_in_one_pass(
    attacks: dict[str, Attack],
    model: Victim,
    victim: TrainedVictim,
    device: torch.device,
    out: Path,
    view: Any = None,
) -> None:
    """Score every non-trainable attack without cached scores in ONE pass of the victim.

    Each batch of victim signals (the expensive part: a detector's or generator's forward)
    feeds all of them, instead of one victim pass per attack; each attack's columns are then
    written to its own ``scores_<name>.csv``, as :func:`_attack_scores` would, so a rerun
    reuses them. Trainable attacks (fitted on the calibration half first) are left to
    :func:`_attack_scores`.
    """
    pending = {
        name: attack
        for name, attack in attacks.items()
        if not attack.trainable and not verified_exists(out / f"scores_{name}.csv")
    }
    if len(pending) < 2:
        return  # nothing to share: _attack_scores does the single pass
    _prepare_attacks(list(pending.values()), model, device)

    def score(signals: Any) -> dict[str, Any]:
        seen = attacker_signals(signals, view)
        columns: dict[str, Any] = {}
        for name, attack in pending.items():
            columns.update({f"{name}\t{k}": v for k, v in attack.score(seen).items()})
        return columns

    frame = _collect(model, victim, device, score, desc="+".join(pending))
    for name in pending:
        own = {c: c.split("\t", 1)[1] for c in frame.columns if c.startswith(f"{name}\t")}
        write_csv(
            out / f"scores_{name}.csv", frame[["sample_id", "role", *own]].rename(columns=own)
        )
        _SCORED_IN_ONE_PASS.add(out / f"scores_{name}.csv")
    log.info("scored %s in one pass of the victim", ", ".join(pending))


def run_attack(cfg: DictConfig, victim: TrainedVictim | None = None) -> Path:
    """Attack the cached victim of ``cfg`` with every attack in ``cfg.attack``.

    Writes ``scores.csv`` (per sample: id, role, label, calibration/test, every attack's
    score and diagnostics), ``results.json`` and ROC plots to the attack folder, and returns
    the path of ``results.json``. Finished attacks are not recomputed on a rerun.

    An attack group that names a stage of its own (``_pipeline_``; ``attack=reference``:
    the reference-model stage) is run by that stage instead.
    """
    stage = cfg.attack.get("_pipeline_")
    if stage:
        return get_object(stage)(cfg, victim)
    victim = victim or locate_victim(cfg)
    if victim.checkpoint is not None:
        import_victim(cfg, victim)  # victim.checkpoint: into the cache, no training
    if not victim.weights.exists():
        raise FileNotFoundError(
            f"no trained victim at {victim.directory} for this configuration; run "
            "`python -m miabench.train_victim` with the same overrides first"
        )
    out = attack_dir(cfg, victim)
    # one job scores a given attack folder; jobs started with it wait, then reuse its results
    with locked(out, "attack folder", cache_lock_dir(cfg)):
        return _run_attack_locked(cfg, victim, out)


def _run_attack_locked(cfg: DictConfig, victim: TrainedVictim, out: Path) -> Path:
    """The body of :func:`run_attack`, run under the attack folder's lock.

    Five steps, each logged: the victim's utility pass, the calibration/test split, the
    attacks' scores and metrics, the run's record, and the atomic write of ``results.json``.
    """
    results_path = out / "results.json"
    if verified_exists(results_path):
        log.info("attack results exist: %s", results_path)
        return results_path
    out.mkdir(parents=True, exist_ok=True)
    clock, started = StageClock(), now_iso()
    device = select_device(cfg)
    model = victim.load(cfg).to(device)

    log.info("[1/5] utility of the victim on members and non-members")
    with clock.stage("utility"):
        utility, utility_dataset = _utility(model, victim, device, out)

    log.info("[2/5] calibration/test halves (seed %s)", cfg.seed)
    halves = split_halves(cfg, utility)

    log.info("[3/5] attacks: %s", ", ".join(k for k, v in cfg.attack.items() if v))
    view = _attacker_view(cfg)
    attacks = _instantiate_attacks(cfg)
    skipped = hidden_attacks(attacks, view)
    for name, why in skipped.items():
        log.warning("attack %s skipped: %s", name, why)
        del attacks[name]
    with clock.stage("shared_pass"):
        _score_in_one_pass(attacks, model, victim, device, out, view)
    table, attacks_out, curves = _evaluate_attacks(
        cfg, attacks, halves, model, victim, device, out, view
    )

    log.info("[4/5] run record: utility, generalization gap, provenance")
    record = provenance(victim, device, clock, started)
    results = _results(cfg, victim, model, utility, utility_dataset, attacks_out, record)
    if skipped:
        results["skipped_attacks"] = skipped

    log.info("[5/5] results → %s", results_path)
    write_csv(out / "scores.csv", table)
    plot_roc(
        curves, out, title=f"{cfg.victim.name} on {cfg.data.name} ({DefenseSetting.of(cfg).name})"
    )
    atomic_write_json(results_path, results, checksum=True)
    # the composed config and every numeric result also reach the configured loggers
    log_results(cfg, results_path)
    return results_path


def _evaluate_attacks(
    cfg: DictConfig,
    attacks: dict[str, Attack],
    halves: Halves,
    model: Victim,
    victim: TrainedVictim,
    device: torch.device,
    out: Path,
    view: Any,
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Every attack's scores (read back or computed) and its metrics on the test half.

    Returns the per-sample table with every attack's columns, ``{attack: metrics}`` and the
    test half's ``(scores, labels)`` per attack for the ROC plots.
    """
    # every attack is judged on the same rows (merging scores keeps the table's row order)
    table, labels, test = halves.table, halves.table["label"].to_numpy(), halves.test
    attacks_out: dict[str, Any] = {}
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, attack in attacks.items():
        scores = _attack_scores(name, attack, model, victim, device, out, view, halves.calibration)
        scores = scores.drop(columns="role").add_prefix(f"{name}.")
        scores = scores.rename(columns={f"{name}.sample_id": "sample_id"})
        table = table.merge(scores, on="sample_id", how="left", validate="one_to_one")
        score = table[f"{name}.score"].to_numpy()
        metrics = held_out_metrics(cfg, score, labels, halves.is_calibration, halves.test_groups)
        if attack.decision_threshold is not None:
            # attacks with a decision of their own (MINT's 0.5 on a sigmoid) also report its
            # accuracy on the test half, as their papers do
            predicted = score[test] >= attack.decision_threshold
            metrics["accuracy_at_decision"] = float(np.mean(predicted == labels[test].astype(bool)))
        metrics["describe"] = attack.describe()
        attacks_out[name] = metrics
        curves[name] = (score[test], labels[test])
        log.info("%s: AUC %.4f", name, metrics["auc"])
    return table, attacks_out, curves


def _results(
    cfg: DictConfig,
    victim: TrainedVictim,
    model: Victim,
    utility: pd.DataFrame,
    utility_dataset: dict[str, Any],
    attacks_out: dict[str, Any],
    record: dict[str, Any],
) -> dict[str, Any]:
    """The ``results.json`` record: run (with its provenance ``record``), utility, gap and
    attacks."""
    util = {
        role: {
            **summarize(
                {c: utility.loc[utility.role == role, c].to_numpy() for c in utility.columns[2:]}
            ),
            **utility_dataset.get(role, {}),
        }
        for role in ROLES
    }
    gap = {
        metric: util["nonmember"][metric] - util["member"][metric]
        for metric, value in util["member"].items()
        if isinstance(value, (int, float))
        and isinstance(util["nonmember"].get(metric), (int, float))
    }
    run = describe_run(cfg, victim)
    run["victim_info"] = model.describe()
    run["provenance"] = record
    view = DefenseSetting.of(cfg).attacker_view_spec
    if view is not None:
        run["attacker_view"] = view
    results = {"run": run, "utility": util, "generalization_gap": gap, "attacks": attacks_out}
    if utility_dataset.get(BENCHMARK):
        # beside "utility", whose keys are roles (the gap and the tables read those)
        results["utility_benchmark"] = utility_dataset[BENCHMARK]
    return results
