"""Cache keys: what shaped a membership split and a trained victim, and their folders.

A key hashes everything that shaped its object and nothing else: a split its data and split
settings; a victim its config, data, training defense, trainer, manifest content, seed and
code (:func:`miabench.pipeline.code_hash.code_version`). Where things run, how they log and
where data lives do not enter, so the same work is found again from another machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from miabench.data.declared import list_sha256
from miabench.defenses.setting import DefenseSetting
from miabench.pipeline.code_hash import code_version, victim_config
from miabench.utils.config import to_container
from miabench.utils.device import training_replicas
from miabench.utils.hashing import stable_hash

if TYPE_CHECKING:
    from miabench.checkpoints.base import CheckpointInfo

#: Trainer keys that do not change what is learned (where and how it is shown).
_COSMETIC_TRAINER_KEYS = {
    "accelerator",
    "enable_progress_bar",
    "enable_model_summary",
    "log_every_n_steps",
    "default_root_dir",
    "num_sanity_val_steps",
}


#: Data keys that say where data lives or how fast it is read, not what it is (the content
#: itself enters the key through the manifest's content hashes).
_LOCATION_KEYS = {"root", "out_root", "num_workers", "eval_batch_size"}


#: Data keys of evaluation-only benchmarks (``data.verification``: LFW-style pairs, and the
#: ``datamodule.benchmark`` built from it): scored in the utility pass, never trained on nor
#: drawn into the split, so neither the victim nor the split depends on them.
EVALUATION_ONLY_DATA_KEYS = {"verification", "benchmark"}


#: Data keys that say how the data is batched and read; a split does not depend on them.
_LOADER_KEYS = {"batch_size", "eval_batch_size", "num_workers"}


def _strip(obj: Any, keys: set[str]) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_strip(v, keys) for v in obj]
    return obj


def split_key(cfg: DictConfig) -> str:
    """Key of a membership split: the data it is drawn from and the split settings."""
    data = _strip(to_container(cfg.data), _LOADER_KEYS | EVALUATION_ONLY_DATA_KEYS)
    split = to_container(cfg.split)
    if not (split.get("population") or {}).get("n_models"):
        # no reference models: the ordinary split, keyed as before the population existed
        split.pop("population", None)
    for key in ("members_list", "nonmembers_list"):
        # declared membership: the lists' content shapes the split, not where they are
        # (no list: the key of a drawn split, as before the lists existed)
        path = split.pop(key, None)
        if path is not None:
            split[f"{key}_sha256"] = list_sha256(path)
    return stable_hash({"data": data, "split": split})


def victim_key(
    cfg: DictConfig, manifest_sha256: str, checkpoint: CheckpointInfo | None = None
) -> dict[str, Any]:
    """Everything that shaped a trained (or imported) victim, and its hash under ``key``.

    An imported victim (``victim.checkpoint``, issue 28) is keyed by what was read
    (``checkpoint``: the file's sha256 and layout, not where it lies), its config, the
    data and manifest and the code; the trainer, the training defense and the seed shaped
    no imported weight and stay out.
    """
    victim = victim_config(cfg)
    if checkpoint is not None:
        victim.pop("checkpoint", None)  # the path: where the file lies, not what it is
        parts = {
            "victim": victim,
            "checkpoint": checkpoint.key(),
            "data": to_container(cfg.data),
            "manifest_sha256": manifest_sha256,
            "code_version": code_version(cfg),
        }
        parts["data"] = _strip(parts["data"], _LOCATION_KEYS | EVALUATION_ONLY_DATA_KEYS)
        parts["key"] = stable_hash(parts)
        return parts
    trainer = {
        k: v for k, v in to_container(cfg.trainer).items() if k not in _COSMETIC_TRAINER_KEYS
    }
    if "devices" in trainer:
        # Which devices is cosmetic, how many data-parallel replicas is not (DDP multiplies
        # the effective batch): `devices: auto` keys as the count it means here, so one GPU,
        # one CPU and a cache written under `devices: 1` share a victim, 4 DDP GPUs do not.
        trainer["devices"] = training_replicas(cfg.trainer.get("accelerator"), trainer["devices"])
    parts = {
        "victim": victim,
        "data": to_container(cfg.data),
        # Only what shapes training: a defense's name is a label, and its attacker_view
        # (output truncation) acts after training, so defenses that differ only there share
        # one trained victim.
        "defense": DefenseSetting.of(cfg).key_fields(),
        "trainer": trainer,
        "manifest_sha256": manifest_sha256,
        "seed": cfg.seed,
        "code_version": code_version(cfg),
    }
    parts["data"] = _strip(parts["data"], _LOCATION_KEYS | EVALUATION_ONLY_DATA_KEYS)
    parts["key"] = stable_hash(parts)
    return parts


def victim_dir(cfg: DictConfig, key: str) -> Path:
    """Cache folder of one trained victim."""
    return Path(cfg.paths.cache_dir) / "victims" / f"{cfg.victim.name}-{cfg.data.name}-{key}"
