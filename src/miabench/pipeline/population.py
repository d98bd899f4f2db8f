"""The models of a reference population: per-model configs, and finding or training them.

Model ``k`` (0 = the target, 1..M the references) is the run's own config with
``split.population.model=k``: an ordinary cached victim trained on column ``k`` of the
population's membership matrix (``data/population.py``). :func:`locate_models` finds every
model in the victim cache, trains the missing ones when ``reference.train`` is set, and
otherwise refuses with the command that trains them (:func:`train_command`).
"""

from __future__ import annotations

import copy
import logging
import shlex
import time
from dataclasses import dataclass
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from miabench.data.population import Population
from miabench.pipeline.seeds import SeedStreams
from miabench.pipeline.train import TrainedVictim, locate_victim, train_victim
from miabench.utils.config import to_container
from miabench.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

#: written beside a victim this stage trained: wall time and device of its training
COST_FILE = "cost.json"

#: ``reference.seeds``: how the models' training seeds relate
SEEDS = ("distinct", "shared")


def model_config(cfg: DictConfig, model: int) -> DictConfig:
    """The config of population model ``model``.

    ``split.population.model`` is set; with ``reference.seeds: distinct`` the model trains
    with ``seed + model`` (its own initialisation and data order, as LiRA's independently
    trained references) while the split and matrix seeds stay the run's, so every model
    shares one population; for a reference (``model > 0``) the attacker's
    ``reference.recipe`` is applied.
    """
    if cfg.reference.seeds not in SEEDS:
        raise ValueError(f"reference.seeds must be one of {SEEDS}, got {cfg.reference.seeds!r}")
    cfg_k = copy.deepcopy(cfg)
    with open_dict(cfg_k):
        cfg_k.split.population.model = model
        if cfg.reference.seeds == "distinct":
            # pinned before the seed moves: they interpolate ${seed} by default
            cfg_k.split.seed = int(cfg.split.seed)
            cfg_k.reference.seed = int(cfg.reference.seed)
            cfg_k.seed = SeedStreams.for_model(int(cfg.seed), model, distinct=True)
        if model > 0:
            # references are trained here, on their own columns; only the target may be a
            # model imported from victim.checkpoint
            if OmegaConf.select(cfg_k, "victim.checkpoint", default=None) is not None:
                cfg_k.victim.checkpoint = None
            for key, value in (to_container(cfg.reference.recipe) or {}).items():
                OmegaConf.update(cfg_k, key, value, merge=False, force_add=True)
    return cfg_k


def _check_reference_config(cfg: DictConfig) -> None:
    ref = cfg.reference
    if not ref.n_models or ref.n_models < 1:
        raise ValueError(
            "attack=reference needs reference models: set reference.n_models (e.g. 16)"
        )
    if cfg.split.get("population") is None:
        raise ValueError(f"split config has no `population` block (split: {cfg.split})")
    recipe = to_container(ref.recipe) or {}
    if ref.knowledge == "same_recipe" and recipe:
        raise ValueError(
            "reference.knowledge is same_recipe but reference.recipe changes "
            f"{sorted(recipe)}; name the knowledge (e.g. other_architecture)"
        )
    if ref.knowledge != "same_recipe" and not recipe:
        raise ValueError(
            f"reference.knowledge={ref.knowledge} but reference.recipe is empty: say what the "
            "references are trained with instead, or use same_recipe"
        )


def _override(key: str, value: Any) -> str:
    def render(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {render(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(render(x) for x in v) + "]"
        return "null" if v is None else str(v)

    return shlex.quote(f"++{key}={render(value)}")


def train_command(cfg: DictConfig, models: list[int]) -> str:
    """The command that trains ``models`` of this run's population, concurrently.

    A Hydra multirun over ``split.population.model`` through the ``parallel`` launcher
    (Hydra's joblib launcher, jobs and threads sized from the machine; ``hydra/launcher=slurm``
    makes each model a SLURM job instead). With distinct seeds each model's ``seed`` follows
    its index through ``${mia_add:seed,model}``, so the sweep is over the models alone.
    """
    distinct = cfg.reference.seeds == "distinct"
    pinned = ("split.population.model", "seed=", "split.seed=", "reference.seed=")
    if HydraConfig.initialized():
        # train_victim has no `table` group (a benchmark's); the model (and seeds) come below
        task = [
            o
            for o in HydraConfig.get().overrides.task
            if not o.lstrip("+~").startswith(("table", *(pinned if distinct else pinned[:1])))
        ]
        overrides = " ".join(shlex.quote(o) for o in task)
    else:
        overrides = "<this run's overrides>"
    recipe = to_container(cfg.reference.recipe) or {}
    extra = "".join(f" {_override(k, v)}" for k, v in recipe.items())
    command = f"python -m miabench.train_victim -m hydra/launcher=parallel {overrides}"
    seeds = ""
    if distinct:
        seed = int(cfg.seed)
        seeds = " " + shlex.quote(f"seed=${{mia_add:{seed},${{split.population.model}}}}")
        seeds += f" split.seed={int(cfg.split.seed)} reference.seed={int(cfg.reference.seed)}"
    lines = []
    for group in ([m for m in models if m == 0], [m for m in models if m > 0]):
        if not group:
            continue
        options = extra if group[0] > 0 else ""
        listed = ",".join(str(m) for m in group)
        lines.append(f"{command}{options} split.population.model={listed}{seeds}")
    return "\n  ".join(lines)


def _device_info(cfg: DictConfig) -> dict[str, Any]:
    return {
        "accelerator": str(cfg.trainer.get("accelerator")),
        "devices": to_container(cfg.trainer.get("devices")),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
    }


def cost(victim: TrainedVictim) -> dict[str, Any]:
    """Wall time and device of a model's training: measured when this stage trained it,
    else read off the cache files (``key.json`` is written when a training starts or
    resumes, ``victim.pt`` when it ends: the last training segment)."""
    measured = victim.directory / COST_FILE
    if measured.exists():
        return read_json(measured)
    start = victim.directory / "key.json"
    if start.exists() and victim.weights.exists():
        seconds = victim.weights.stat().st_mtime - start.stat().st_mtime
        return {"wall_time_s": round(seconds, 1), "source": "file times (last segment)"}
    return {"wall_time_s": None, "source": "unknown"}


@dataclass
class PopulationModels:
    """The K models of a population: their configs and cached victims."""

    configs: list[DictConfig]
    victims: list[TrainedVictim]
    population: Population

    @property
    def n_models(self) -> int:
        return len(self.victims)


def locate_models(cfg: DictConfig, target: TrainedVictim | None = None) -> PopulationModels:
    """Locate (and with ``reference.train``, train) the target and its references.

    Raises:
        FileNotFoundError: models are missing and ``reference.train`` is false; the message
            names them and the command that trains them.
    """
    _check_reference_config(cfg)
    n_models = int(cfg.reference.n_models) + 1
    configs = [model_config(cfg, k) for k in range(n_models)]
    victims = [target or locate_victim(configs[0])]
    victims += [locate_victim(c) for c in configs[1:]]
    missing = [k for k, v in enumerate(victims) if not v.weights.exists()]
    if missing and not cfg.reference.train:
        raise FileNotFoundError(
            f"{len(missing)} of the {n_models} population models are not trained: "
            f"model(s) {missing} (0 = target). Train them with\n  "
            f"{train_command(cfg, missing)}\nor rerun with reference.train=true."
        )
    for k in missing:
        log.info("training population model %d/%d", k, n_models - 1)
        start, cpu = time.perf_counter(), time.process_time()
        victims[k] = train_victim(configs[k])
        cost = {
            "wall_time_s": round(time.perf_counter() - start, 1),
            # CPU seconds of this process: the cost on a machine shared with other jobs
            "cpu_time_s": round(time.process_time() - cpu, 1),
            "source": "measured (reference.train)",
            **_device_info(configs[k]),
        }
        atomic_write_json(victims[k].directory / COST_FILE, cost)
    population = victims[0].datamodule.population
    if population is None:
        raise RuntimeError("the target's data module drew no population (split.population)")
    return PopulationModels(configs, victims, population)


# --------------------------------------------------------------------------- scoring
