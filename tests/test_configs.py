"""Every entry config and every experiment composes, and their targets import."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object
from omegaconf import OmegaConf, open_dict

import miabench  # noqa: F401  (registers the config resolvers)
from tests.conftest import CONF_DIR

EXPERIMENTS = sorted(
    str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
    for p in (CONF_DIR / "experiment").rglob("*.yaml")
)
ENTRY = ["train_victim", "run_attack", "make_table", "benchmark"]


def _targets(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        if "_target_" in node:
            found.append(node["_target_"])
        for v in node.values():
            found += _targets(v)
    elif isinstance(node, list):
        for v in node:
            found += _targets(v)
    return found


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=True)


def _check(cfg) -> None:
    run_dir = cfg.hydra.run.dir  # resolves against the rest of the config
    with open_dict(cfg):
        del cfg["hydra"]
    container = OmegaConf.to_container(cfg, resolve=True)
    for target in _targets(container):
        assert get_object(target) is not None, target
    assert run_dir


def test_experiments_exist() -> None:
    assert "embedded/pix2pix_edges2fashion" in EXPERIMENTS
    assert {f"shafran2021/pix2pix_{r}" for r in ("facades", "maps2sat", "cityscapes")} <= set(
        EXPERIMENTS
    )


@pytest.mark.parametrize("name", ENTRY)
def test_entry_configs_compose(name: str) -> None:
    _check(_compose(name, []))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment: str) -> None:
    cfg = _compose("run_attack", [f"experiment={experiment}"])
    assert cfg.attack, "an experiment must leave at least one attack"
    _check(cfg)


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer=gpu"],
        ["trainer=ddp"],
        ["logger=wandb"],
        ["logger=many"],
        ["debug=fast"],
        ["debug=overfit"],
        ["attack=reconstruction"],
        ["hydra/launcher=slurm"],
        ["hydra/launcher=local"],
        ["data=facades", "split=paper"],
        ["data=maps"],
        ["data=cityscapes"],
        ["data=edges2shoes"],
        ["data=edges2handbags"],
    ],
)
def test_groups_compose(overrides: list[str]) -> None:
    _check(_compose("run_attack", overrides))


def test_wandb_is_offline_by_default() -> None:
    cfg = _compose("train_victim", ["logger=wandb"])
    assert cfg.logger.wandb.offline is True


def test_slurm_launcher_is_submitit() -> None:
    cfg = _compose("run_attack", ["hydra/launcher=slurm"])
    assert "submitit" in cfg.hydra.launcher._target_.lower()


def test_run_dir_is_deterministic() -> None:
    a = _compose("train_victim", ["seed=3"]).hydra.run.dir
    b = _compose("train_victim", ["seed=3"]).hydra.run.dir
    assert a == b and "${now:" not in str(OmegaConf.to_yaml(_compose("train_victim", []).hydra))


def test_maps_matches_published_name() -> None:
    cfg = _compose("run_attack", ["experiment=shafran2021/pix2pix_maps2sat"])
    assert cfg.data.display_name == "maps2sat"
    assert Path(str(cfg.data.root)).name == "maps"
