"""Every entry config and every experiment composes, and their targets import."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf, open_dict

import miabench  # noqa: F401  (registers the config resolvers)
from miabench.pipeline.code_hash import config_targets
from tests.conftest import CONF_DIR, compose_cfg

EXPERIMENTS = sorted(
    str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
    for p in (CONF_DIR / "experiment").rglob("*.yaml")
)
ENTRY = ["train_victim", "run_attack", "make_table", "benchmark", "report"]


def _check(cfg) -> None:
    run_dir = cfg.hydra.run.dir  # resolves against the rest of the config
    with open_dict(cfg):
        del cfg["hydra"]
    container = OmegaConf.to_container(cfg, resolve=True)
    for target in config_targets(container):
        assert get_object(target) is not None, target
    assert run_dir


def test_experiments_exist() -> None:
    assert "embedded/pix2pix_edges2fashion" in EXPERIMENTS
    assert {f"shafran2021/pix2pix_{r}" for r in ("facades", "maps2sat", "cityscapes")} <= set(
        EXPERIMENTS
    )


@pytest.mark.parametrize("name", ENTRY)
def test_entry_configs_compose(name: str) -> None:
    _check(compose_cfg(name, [], hydra=True))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment: str) -> None:
    cfg = compose_cfg("run_attack", [f"experiment={experiment}"], hydra=True)
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
    _check(compose_cfg("run_attack", overrides, hydra=True))


def test_wandb_is_offline_by_default() -> None:
    cfg = compose_cfg("train_victim", ["logger=wandb"], hydra=True)
    assert cfg.logger.wandb.offline is True


def test_slurm_launcher_is_submitit() -> None:
    cfg = compose_cfg("run_attack", ["hydra/launcher=slurm"], hydra=True)
    assert "submitit" in cfg.hydra.launcher._target_.lower()


def test_run_dir_is_deterministic() -> None:
    a = compose_cfg("train_victim", ["seed=3"], hydra=True).hydra.run.dir
    b = compose_cfg("train_victim", ["seed=3"], hydra=True).hydra.run.dir
    assert a == b and "${now:" not in str(
        OmegaConf.to_yaml(compose_cfg("train_victim", [], hydra=True).hydra)
    )


def test_maps_matches_published_name() -> None:
    cfg = compose_cfg("run_attack", ["experiment=shafran2021/pix2pix_maps2sat"], hydra=True)
    assert cfg.data.display_name == "maps2sat"
    assert Path(str(cfg.data.root)).name == "maps"
