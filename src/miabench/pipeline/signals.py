"""Signal stage: one pass of a victim over its population, per-sample signals cached on disk.

Reference-model attacks (LiRA, RMIA, ...) compare a sample's signal under the target with the
same signal under many reference models, so every model's signals are computed once, over
the whole population (its members and non-members), and cached as one ``.npz`` per model.
The attacks then read a stacked samples x models array (:func:`stack_signals`) and never run
a victim again.

What a signal is depends on the victim family; ``reference.signals.compute`` names a function
``(signals) -> {name: (B,) or (B, P) tensor}`` of the victim's signal bundle, one per family
beside the reference attacks (:mod:`miabench.attacks.reference.signals`), chosen by config
(``conf/reference/signals/``).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from miabench.attacks.reference.signals import SignalFn
from miabench.defenses.setting import DefenseSetting
from miabench.pipeline.attack import attacker_signals
from miabench.pipeline.code_hash import module_closure, target_modules
from miabench.pipeline.train import TrainedVictim
from miabench.utils.config import to_container
from miabench.utils.hashing import stable_hash
from miabench.utils.io import atomic_write, verified_exists
from miabench.victims.base import Victim

log = logging.getLogger(__name__)


def signal_key(cfg: DictConfig, victim: TrainedVictim) -> dict[str, Any]:
    """Everything that shapes a model's cached signals, and its hash under ``key``.

    The victim key (weights, data, split), the signal config, the attacker view the signals
    are computed through, and the source of the signal code and of the view (the modules
    their ``_target_``s name and every ``miabench`` module those import): editing the
    quantiser of ``defense=output_truncation`` gives new signals, never stale ones.
    """
    spec = to_container(cfg.reference.signals.compute)
    view = DefenseSetting.of(cfg).attacker_view_spec
    parts = {
        "victim": victim.key["key"],
        "signals": spec,
        "attacker_view": view,
        "code": module_closure(target_modules({"signals": spec, "view": view})),
    }
    parts["key"] = stable_hash(parts)
    return parts


def signal_path(cfg: DictConfig, victim: TrainedVictim) -> Path:
    """Cache file of one model's signals: ``<cache>/signals/<victim dir>-<signal key>.npz``."""
    key = signal_key(cfg, victim)["key"]
    return Path(cfg.paths.cache_dir) / "signals" / f"{victim.directory.name}-{key}.npz"


def compute_signals(cfg: DictConfig, victim: TrainedVictim, device: torch.device) -> Path:
    """One pass of ``victim`` over its members and non-members; the signals cached on disk.

    Args:
        cfg: the model's config (``reference.signals.compute``, ``defense.attacker_view``).
        victim: the trained victim (its data module serves the population); loaded only
            when its signals are not cached yet.
        device: where to run it.

    Returns:
        Path of the ``.npz``: ``sample_id`` plus one array per signal, rows sorted by id,
        and ``meta`` (JSON: the signal key). An existing file is reused.
    """
    path = signal_path(cfg, victim)
    if verified_exists(path):  # a damaged cache file is named, removed and recomputed
        log.info("reusing signals %s", path)
        return path
    fn: SignalFn = instantiate(cfg.reference.signals.compute)
    view = DefenseSetting.of(cfg).attacker_view()
    model: Victim = victim.load(cfg)
    dm = victim.datamodule
    ids: list[str] = []
    columns: dict[str, list[np.ndarray]] = {}
    for role, loader in (
        ("member", dm.member_dataloader()),
        ("nonmember", dm.nonmember_dataloader()),
    ):
        for signals in model.iter_signals(loader, device=device, desc=f"signals [{role}]"):
            # the query black box answers through the view too (label-agreement signals)
            signals = attacker_signals(signals, view)
            ids += list(signals["sample_id"])
            for name, value in fn(signals).items():
                # float32 halves the cache; LiRA's Gaussians need no more precision
                columns.setdefault(name, []).append(value.detach().cpu().float().numpy())
    order = np.argsort(np.array(ids))
    arrays = {name: np.concatenate(parts)[order] for name, parts in columns.items()}
    meta = json.dumps(signal_key(cfg, victim) | {"code": None}, sort_keys=True)

    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, sample_id=np.array(ids)[order], meta=np.array(meta), **arrays)
        tmp.write_bytes(buffer.getvalue())

    atomic_write(path, write, checksum=True)
    log.info("signals of %s → %s", victim.directory.name, path)
    return path


@dataclass
class StackedSignals:
    """Signals of K models over one population: ``values[name]`` is (N, K) or (N, P, K)."""

    sample_ids: list[str]
    values: dict[str, np.ndarray]


def stack_signals(paths: Sequence[Path], sample_ids: Sequence[str]) -> StackedSignals:
    """Read each model's cached signals and stack them with the models on the last axis.

    Args:
        paths: one ``.npz`` per model, in model order.
        sample_ids: the population in matrix row order.

    Raises:
        ValueError: naming the file, when it does not hold exactly the population's samples
            or the models disagree on which signals exist.
    """
    sample_ids = list(sample_ids)
    stacked: dict[str, list[np.ndarray]] = {}
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            ids = [str(s) for s in data["sample_id"]]
            if sorted(ids) != sorted(sample_ids):
                raise ValueError(
                    f"{path} holds signals of {len(ids)} samples that are not the "
                    f"population's {len(sample_ids)}; remove it to recompute"
                )
            row = {sid: i for i, sid in enumerate(ids)}
            take = np.array([row[s] for s in sample_ids])
            names = [n for n in data.files if n not in ("sample_id", "meta")]
            if stacked and sorted(names) != sorted(stacked):
                raise ValueError(f"{path} has signals {names}, other models {sorted(stacked)}")
            for name in names:
                stacked.setdefault(name, []).append(data[name][take].astype(np.float64))
    return StackedSignals(sample_ids, {n: np.stack(v, axis=-1) for n, v in stacked.items()})
