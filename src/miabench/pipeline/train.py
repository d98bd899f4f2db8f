"""Stage 1: train a victim, or reuse the cached one trained under the same key."""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from miabench.checkpoints.base import CheckpointInfo
from miabench.defenses.setting import DefenseSetting
from miabench.pipeline.common import build_datamodule
from miabench.pipeline.imported import import_victim, imported_path, read_checkpoint
from miabench.pipeline.keys import victim_dir, victim_key
from miabench.pipeline.seeds import SeedStreams
from miabench.utils.config import to_container
from miabench.utils.hashing import stable_hash
from miabench.utils.io import (
    CorruptFileError,
    atomic_write,
    atomic_write_json,
    check_torch_archive,
    discard,
    read_json,
    verified_exists,
)
from miabench.utils.locks import cache_lock_dir, locked
from miabench.utils.provenance import StageClock, environment
from miabench.utils.weights import pretrained_weights_replaced
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
    #: what ``victim.checkpoint`` was read as (an imported victim), else None
    checkpoint: CheckpointInfo | None = None
    #: the imported module, loaded and checked, until it is written to the cache
    imported: Victim | None = field(default=None, repr=False)

    @property
    def weights(self) -> Path:
        return self.directory / WEIGHTS_FILE

    @property
    def retrain_hint(self) -> str:
        """What repairs a damaged cached victim."""
        return (
            f"remove {self.directory} (or just the damaged file) and rerun "
            "`python -m miabench.train_victim` with the same overrides to train it again"
        )

    def load(self, cfg: DictConfig) -> Victim:
        """Build the victim from ``cfg`` and load its trained weights (``weights_only``).

        The defense's structural changes (e.g. DP-SGD's BatchNorm → GroupNorm) are applied
        first, so the module has the parameters it was trained with.

        Raises:
            CorruptFileError: the cached weights are damaged (checksum, truncation), naming
                the file and how to retrain.
        """
        # an imported victim's every weight comes from victim.pt: nothing to download
        with pretrained_weights_replaced(imported_path(cfg) is not None):
            module = instantiate(cfg.victim.module)
        DefenseSetting.of(cfg).training().prepare_module(module)
        check_torch_archive(self.weights, fix=self.retrain_hint)
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError) as err:
            raise CorruptFileError(self.weights, str(err), self.retrain_hint) from err
        module.load_state_dict(state)
        return module

    def meta(self) -> dict[str, Any]:
        """What training wrote beside the weights (epochs, steps, final metrics); {} if absent."""
        path = self.directory / META_FILE
        return read_json(path, fix=self.retrain_hint) if path.exists() else {}

    def is_complete(self) -> bool:
        """True when the cache holds this victim's verified weights and metadata.

        Damaged files are removed (and named in a warning) so that training redoes them.
        """
        meta_ok = verified_exists(self.directory / META_FILE)
        if not self.weights.is_file():
            return False
        try:  # by its sidecar, or by its zip CRCs when it has none
            check_torch_archive(self.weights, fix=self.retrain_hint)
        except CorruptFileError as err:
            log.warning("%s; training it again", err)
            discard(self.weights)
            return False
        if not meta_ok:
            # victim.json is written before victim.pt, so this is a damaged or deleted file
            log.warning("%s lacks a valid %s; training it again", self.directory, META_FILE)
            discard(self.weights)
            return False
        return True


def _data_lock_target(cfg: DictConfig) -> Path:
    """Lock target of the data ``cfg`` describes (its build), shared by every split of it.

    The builders write where their config says (``data.out_root``); this path only names
    the lock, ``<cache>/locks/data/<name>-<hash of data config>.lock``.
    """
    data = to_container(cfg.data)
    return Path(cfg.paths.cache_dir) / "data" / f"{cfg.data.name}-{stable_hash(data)}"


def missing_data_message(cfg: DictConfig, err: BaseException) -> str:
    """The reader's error, then how to get the data: ``prepare_data`` or ``data.root``."""
    name = OmegaConf.select(cfg, "data.name", default="?")
    root = OmegaConf.select(cfg, "data.root", default=None)
    return (
        f"{err}\n  data={name} reads data.root={root}. Download and unpack a public dataset "
        "with `python -m miabench.prepare_data <dataset>` (`--list` names them), or point "
        "data.root=<folder> at a copy in its published layout."
    )


def locate_victim(cfg: DictConfig) -> TrainedVictim:
    """Prepare the data and split, and compute where the victim for ``cfg`` is cached.

    Jobs started together build the data once and draw the split once: the first to get
    each lock does the work, the others find it done. A damaged split manifest is removed
    and drawn again (the draw is seeded, so it is the same split).

    With ``victim.checkpoint`` set, the file is read and checked first, before any data is
    built, and the victim is keyed by its sha256 and layout (:func:`victim_key`).
    """
    module, checkpoint = read_checkpoint(cfg) if imported_path(cfg) else (None, None)
    datamodule = build_datamodule(cfg)
    try:
        with locked(_data_lock_target(cfg), "dataset build", cache_lock_dir(cfg)):
            datamodule.prepare_data()
        manifest_path = getattr(datamodule, "manifest_path", None)
        if manifest_path is None:
            datamodule.setup()
        else:
            with locked(manifest_path, "membership split", cache_lock_dir(cfg)):
                verified_exists(manifest_path)  # a damaged manifest is removed and redrawn
                datamodule.setup()
    except FileNotFoundError as err:
        raise FileNotFoundError(missing_data_message(cfg, err)) from err
    # The manifest hash covers ids, content hashes and roles, not where the files live.
    key = victim_key(cfg, datamodule.manifest.sha256(), checkpoint)
    return TrainedVictim(victim_dir(cfg, key["key"]), key, datamodule, checkpoint, module)


def _loggers(cfg: DictConfig, directory: Path) -> list[Any]:
    loggers = []
    for name, spec in (cfg.get("logger") or {}).items():
        if spec is None:
            continue
        log.info("logger %s → %s", name, directory)
        loggers.append(instantiate(spec, save_dir=str(directory)))
    return loggers


class RngStateCheckpoint(pl.Callback):
    """Saves the random generators' states in each checkpoint and restores them on resume.

    Lightning restores weights, optimizers and loops but not the Python, NumPy and torch
    generators, so a resumed training would draw other shuffles, crops and dropout masks
    than the run that was killed. With their states restored, a training killed after a
    checkpoint and resumed produces the same weights as one that was never interrupted
    (on the CPU; GPU kernels may add their own non-determinism).
    """

    # Lightning's own _collect_rng_states keeps NumPy's state as an array, which a
    # weights_only checkpoint load refuses; here it is stored as plain lists.
    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return {"rng": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict.get("rng")
        if not state:
            return  # a checkpoint written before this callback existed
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        python = state["python"]
        random.setstate((python[0], tuple(python[1]), python[2]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _callbacks(cfg: DictConfig, directory: Path) -> list[pl.Callback]:
    callbacks: list[pl.Callback] = [RngStateCheckpoint()]
    for name, spec in (cfg.get("callbacks") or {}).items():
        if spec is None:
            continue
        if name == "model_checkpoint":
            callbacks.append(instantiate(spec, dirpath=str(directory / "checkpoints")))
        else:
            callbacks.append(instantiate(spec))
    return callbacks


def _resumable_checkpoint(directory: Path) -> str | None:
    """``checkpoints/last.ckpt`` when it is intact; a damaged one is removed (train afresh)."""
    last = directory / "checkpoints" / "last.ckpt"
    if not last.exists():
        return None
    try:
        check_torch_archive(last)
    except (CorruptFileError, FileNotFoundError) as err:
        # FileNotFoundError: last.ckpt is a link to an epoch checkpoint that is gone
        log.warning("%s; training from the start instead of resuming", err)
        shutil.rmtree(directory / "checkpoints", ignore_errors=True)
        return None
    log.info("resuming victim training from %s", last)
    return str(last)


def train_victim(cfg: DictConfig) -> TrainedVictim:
    """Train the victim ``cfg`` describes, unless the cache already holds it.

    A finished victim (verified ``victim.pt`` and ``victim.json``) is reused as is; an
    interrupted training resumes from ``checkpoints/last.ckpt``. The membership manifest and
    everything that went into the cache key are written beside the weights. Jobs started
    together on one victim train it once: the first takes the victim's lock, the others
    wait for it and reuse its weights (DDP ranks other than 0 do not lock, as rank 0 holds
    the lock while it waits for them).
    """
    pl.seed_everything(SeedStreams.of(cfg).training, workers=True)
    victim = locate_victim(cfg)
    if victim.checkpoint is not None:
        # a model trained elsewhere (victim.checkpoint): imported, never trained here
        return import_victim(cfg, victim)
    if victim.is_complete():
        log.info("reusing cached victim %s", victim.directory)
        return victim
    if rank_zero_only.rank != 0:
        return _train(cfg, victim)
    with locked(victim.directory, "victim", cache_lock_dir(cfg)):
        # whoever held the lock before us may have trained it meanwhile
        if victim.is_complete():
            log.info("reusing cached victim %s (trained by another job)", victim.directory)
            return victim
        return _train(cfg, victim)


def _train(cfg: DictConfig, victim: TrainedVictim) -> TrainedVictim:
    directory = victim.directory
    directory.mkdir(parents=True, exist_ok=True)
    victim.datamodule.manifest.to_csv(directory / "manifest.csv")
    atomic_write_json(directory / "key.json", victim.key, checksum=True)

    module = instantiate(cfg.victim.module)
    # The defense acts through generic hooks (module traversal, the data module, callbacks
    # that see the optimizers Lightning built), so it applies to any victim.
    defense = DefenseSetting.of(cfg).training()
    defense.prepare_module(module)
    datamodule = defense.prepare_datamodule(victim.datamodule)
    trainer: pl.Trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(directory),
        logger=_loggers(cfg, directory) or False,
        callbacks=_callbacks(cfg, directory) + defense.callbacks(),
    )
    ckpt_path = _resumable_checkpoint(directory)
    clock = StageClock()
    with clock.stage("train"):
        # weights_only: a checkpoint is unpickled with tensors and plain containers only.
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if trainer.interrupted:
        raise RuntimeError(f"training of {directory} was interrupted; rerun to resume")

    if trainer.is_global_zero:
        # victim.json first, victim.pt last: the weights mark a finished victim, so a job
        # killed in between leaves no victim that looks finished without its metadata.
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
                # where it trained (Lightning moves the module back to the CPU at the end)
                "environment": {
                    **environment(trainer.strategy.root_device),
                    "accelerator": type(trainer.accelerator).__name__,
                    "num_devices": trainer.num_devices,
                    "world_size": trainer.world_size,
                    "precision": str(trainer.precision),
                },
            },
            checksum=True,
        )
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        atomic_write(directory / WEIGHTS_FILE, lambda p: torch.save(state, p), checksum=True)
        # The resumable checkpoint is no longer needed once the final weights exist.
        shutil.rmtree(directory / "checkpoints", ignore_errors=True)
    trainer.strategy.barrier()
    log.info("trained victim → %s", directory)
    return victim
