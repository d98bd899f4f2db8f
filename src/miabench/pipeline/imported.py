"""Stage 1 for a model trained elsewhere (issue 28): import ``victim.checkpoint``, no training.

The file is read and checked (keys and shapes) before anything else runs, then written into
the victim cache exactly where a trained victim would be (``victim.pt`` + ``victim.json``,
keyed by the file's sha256 and layout), so the attack, reference and table stages use it
unchanged. ``victim.json`` records what was read (``checkpoint``) and ``imported: true``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from miabench.checkpoints.base import CheckpointInfo
from miabench.checkpoints.load import META_FILE, load_checkpoint
from miabench.defenses.setting import DefenseSetting
from miabench.utils.config import to_container
from miabench.utils.io import atomic_write, atomic_write_json
from miabench.utils.locks import cache_lock_dir, locked
from miabench.utils.provenance import StageClock, environment
from miabench.utils.weights import pretrained_weights_replaced

if TYPE_CHECKING:
    from miabench.pipeline.train import TrainedVictim
    from miabench.victims.base import Victim

log = logging.getLogger(__name__)


def imported_path(cfg: DictConfig) -> str | None:
    """``victim.checkpoint`` when it names a model to import, else None."""
    value = OmegaConf.select(cfg, "victim.checkpoint", default=None)
    return None if value is None or str(value).lower() in ("", "none", "null") else str(value)


def _refuse_training_defense(cfg: DictConfig, path: str) -> None:
    defense = DefenseSetting.of(cfg)
    if defense.config.get("training") is not None:
        raise ValueError(
            f"victim.checkpoint={path} imports a model trained elsewhere, but defense="
            f"{defense.name} changes how a victim is trained (defense.training); use "
            "defense=none or a post-hoc defense (defense=output_truncation)"
        )


def read_checkpoint(cfg: DictConfig) -> tuple[Victim, CheckpointInfo]:
    """Build the configured victim and load ``victim.checkpoint`` into it, strictly.

    Called before the data is built, so a wrong file fails first.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        CheckpointError: it is not the layout expected (file, layout, first bad keys).
        ValueError: a training defense is configured.
    """
    path = imported_path(cfg)
    if path is None:
        raise ValueError("victim.checkpoint is not set")
    _refuse_training_defense(cfg, path)
    # the ImageNet weights of a backbone would only be overwritten (and downloaded first)
    with pretrained_weights_replaced():
        module = instantiate(cfg.victim.module)
    spec = OmegaConf.select(cfg, "victim.checkpoint_reader", default=None)
    reader = instantiate(spec) if spec is not None else None
    info = load_checkpoint(module, path, reader)
    log.info("victim.checkpoint: read %s as %s (sha256 %s)", path, info.layout, info.sha256[:12])
    return module, info


def import_victim(cfg: DictConfig, victim: TrainedVictim) -> TrainedVictim:
    """Write the imported weights into the victim's cache folder, once (under its lock).

    Returns ``victim``, now complete (``victim.pt`` + ``victim.json``).
    """
    if victim.checkpoint is None:
        raise ValueError(f"{victim.directory} is not an imported victim (victim.checkpoint)")
    if victim.is_complete():
        log.info("reusing imported victim %s", victim.directory)
        return victim
    with locked(victim.directory, "victim", cache_lock_dir(cfg)):
        if not victim.is_complete():
            _write(cfg, victim)
    return victim


def _write(cfg: DictConfig, victim: TrainedVictim) -> None:
    clock = StageClock()
    with clock.stage("import"):
        module = victim.imported if victim.imported is not None else read_checkpoint(cfg)[0]
        directory = victim.directory
        directory.mkdir(parents=True, exist_ok=True)
        victim.datamodule.manifest.to_csv(directory / "manifest.csv")
        atomic_write_json(directory / "key.json", victim.key, checksum=True)
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    meta: dict[str, Any] = {
        "key": victim.key["key"],
        "imported": True,
        "checkpoint": victim.checkpoint.describe(),
        "epochs": None,
        "global_step": None,
        "metrics": {},
        "config": to_container(cfg.victim),
        "defense": {},
        "timing": clock.stages["import"],
        "environment": environment(module.device),
    }
    # victim.json first, victim.pt last: the weights mark a finished victim (as in training)
    atomic_write_json(directory / META_FILE, meta, checksum=True)
    atomic_write(victim.weights, lambda p: torch.save(state, p), checksum=True)
    victim.imported = None  # the cache holds it now
    log.info("imported victim → %s", directory)
