"""Stage 1: train a victim, or reuse the cached one trained under the same key."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from miabench.defenses.base import build_defense
from miabench.pipeline.common import build_datamodule, to_container, victim_dir, victim_key
from miabench.utils.io import atomic_write, atomic_write_json, read_json
from miabench.utils.provenance import StageClock, environment
from miabench.victims.base import Victim

log = logging.getLogger(__name__)

WEIGHTS_FILE = "victim.pt"
META_FILE = "victim.json"


@dataclass
class TrainedVictim:
    """A trained victim in the cache."""

    directory: Path
    key: dict[str, Any]
    datamodule: Any

    @property
    def weights(self) -> Path:
        return self.directory / WEIGHTS_FILE

    def load(self, cfg: DictConfig) -> Victim:
        """Build the victim from ``cfg`` and load its trained weights (``weights_only``).

        The defense's structural changes (e.g. DP-SGD's BatchNorm → GroupNorm) are applied
        first, so the module has the parameters it was trained with.
        """
        module = instantiate(cfg.victim.module)
        build_defense(cfg).prepare_module(module)
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
        return module

    def meta(self) -> dict[str, Any]:
        """What training wrote beside the weights (epochs, steps, final metrics); {} if absent."""
        path = self.directory / META_FILE
        return read_json(path) if path.exists() else {}


def locate_victim(cfg: DictConfig) -> TrainedVictim:
    """Prepare the data and split, and compute where the victim for ``cfg`` is cached."""
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup()
    # The manifest hash covers ids, content hashes and roles, not where the files live.
    key = victim_key(cfg, datamodule.manifest.sha256())
    return TrainedVictim(victim_dir(cfg, key["key"]), key, datamodule)


def _loggers(cfg: DictConfig, directory: Path) -> list[Any]:
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        log.info("logger %s → %s", name, directory)
        loggers.append(instantiate(spec, save_dir=str(directory)))
    return loggers


def _callbacks(cfg: DictConfig, directory: Path) -> list[pl.Callback]:
    callbacks = []
    for name, spec in (cfg.get("callbacks") or {}).items():
        if spec is None:
            continue
        if name == "model_checkpoint":
            callbacks.append(instantiate(spec, dirpath=str(directory / "checkpoints")))
        else:
            callbacks.append(instantiate(spec))
    return callbacks


def train_victim(cfg: DictConfig) -> TrainedVictim:
    """Train the victim ``cfg`` describes, unless the cache already holds it.

    A finished victim (``victim.pt`` present) is reused as is; an interrupted training
    resumes from ``checkpoints/last.ckpt``. The membership manifest and everything that went
    into the cache key are written beside the weights.
    """
    pl.seed_everything(cfg.seed, workers=True)
    victim = locate_victim(cfg)
    directory = victim.directory
    if victim.weights.exists():
        log.info("reusing cached victim %s", directory)
        return victim

    directory.mkdir(parents=True, exist_ok=True)
    victim.datamodule.manifest.to_csv(directory / "manifest.csv")
    atomic_write_json(directory / "key.json", victim.key)

    module = instantiate(cfg.victim.module)
    # The defense acts through generic hooks (module traversal, the data module, callbacks
    # that see the optimizers Lightning built), so it applies to any victim.
    defense = build_defense(cfg)
    defense.prepare_module(module)
    datamodule = defense.prepare_datamodule(victim.datamodule)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(directory),
        logger=_loggers(cfg, directory) or False,
        callbacks=_callbacks(cfg, directory) + defense.callbacks(),
    )
    last = directory / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if last.exists() else None
    if ckpt_path:
        log.info("resuming victim training from %s", last)
    clock = StageClock()
    with clock.stage("train"):
        # weights_only: a checkpoint is unpickled with tensors and plain containers only.
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if trainer.interrupted:
        raise RuntimeError(f"training of {directory} was interrupted; rerun to resume")

    if trainer.is_global_zero:
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        atomic_write(directory / WEIGHTS_FILE, lambda p: torch.save(state, p))
        atomic_write_json(
            directory / META_FILE,
            {
                "key": victim.key["key"],
                "epochs": trainer.current_epoch,
                "global_step": trainer.global_step,
                "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
                "config": to_container(cfg.victim),
                # what the defense did or measured (DP ε at δ, ...), → run.defense_report
                "defense": defense.report(),
                # when and where this process trained (a resumed run times its last part)
                "timing": {**clock.stages["train"], "resumed": ckpt_path is not None},
                "environment": environment(module.device),
            },
        )
        # The resumable checkpoint is no longer needed once the final weights exist.
        shutil.rmtree(directory / "checkpoints", ignore_errors=True)
    trainer.strategy.barrier()
    log.info("trained victim → %s", directory)
    return victim
