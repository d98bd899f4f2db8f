"""RunId: one build and parse of a run's folder name, byte-identical to the names in use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from miabench.pipeline.run_id import RunId
from tests.conftest import compose_cfg

RESULTS = Path(__file__).resolve().parents[2] / "results"
COMMITTED = sorted(p.parent for p in RESULTS.glob("*/runs/*/results.json"))
#: Records of the shafran2021 claims sweeps, named by an earlier sweep after its points
#: (``<point>[-<output dim>]-s<seed>``); no stage writes such names today.
LEGACY = {
    "garment_edges-s0",
    "garment_garment_autoencoder_-s0",
    "pix2pix_edges_garment-12288-s0",
    "pix2pix_edges_garment-3072-s0",
    "pix2pix_edges_garment-768-s0",
    "resnet18_classifier_10_classes_-10-s0",
    "upernet50_scenes-45056-s0",
    "upernet50_scenes-8192-s0",
}


def _cfg(seed: int = 3):
    return OmegaConf.create(
        {
            "victim": {"name": "pix2pix"},
            "data": {"name": "edges2fashion"},
            "defense": {"name": "dpsgd_low_noise"},
            "seed": seed,
            "reference": {"n_models": 16},
        }
    )


def test_names_as_the_stages_wrote_them() -> None:
    cfg = _cfg()
    key = "0123456789abcdef"
    # the f-strings the attack and reference stages built their folder names with
    attack = f"{cfg.victim.name}-{cfg.data.name}-{cfg.defense.name}-s{cfg.seed}-{key}"
    reference = (
        f"reference-{cfg.victim.name}-{cfg.data.name}-{cfg.defense.name}-s{cfg.seed}"
        f"-m{cfg.reference.n_models}-{key}"
    )
    assert str(RunId.of(cfg, key)) == attack
    built = RunId.of(cfg, key, prefix="reference", n_models=cfg.reference.n_models)
    assert str(built) == reference
    assert RunId.parse(attack) == RunId("pix2pix", "edges2fashion", "dpsgd_low_noise", 3, key)
    assert RunId.parse(reference) == built


def test_attack_dir_of_a_composed_config(tmp_path: Path) -> None:
    from miabench.pipeline.attack import attack_dir

    cfg = compose_cfg("run_attack", root_dir=tmp_path)

    class Victim:
        key = {"key": "f" * 16}

    name = attack_dir(cfg, Victim()).name
    run = RunId.parse(name)
    assert (run.victim, run.data, run.defense, run.seed) == (
        cfg.victim.name,
        cfg.data.name,
        cfg.defense.name,
        cfg.seed,
    )
    assert str(run) == name


@pytest.mark.parametrize("seed", [0, 1, 42, 12345])
@pytest.mark.parametrize("key", [None, "0123456789abcdef", "9999999999999999"])
@pytest.mark.parametrize("n_models", [None, 1, 16])
def test_round_trip(seed: int, key: str | None, n_models: int | None) -> None:
    for prefix in (None, "reference"):
        run = RunId("hrnetv2", "fashion_scenes", "none", seed, key, prefix, n_models)
        assert RunId.parse(str(run)) == run


@pytest.mark.parametrize("folder", COMMITTED, ids=lambda p: f"{p.parents[1].name}/{p.name}")
def test_committed_records(folder: Path) -> None:
    if folder.name in LEGACY:
        with pytest.raises(ValueError, match=folder.name):
            RunId.parse(folder.name)
        return
    run = RunId.parse(folder.name)
    assert str(run) == folder.name
    recorded = json.loads((folder / "results.json").read_text())["run"]
    assert (run.victim, run.defense, run.seed) == (
        recorded["victim"],
        recorded["defense"],
        recorded["seed"],
    )
    assert run.data == recorded.get("data_name", Path(recorded["victim_dir"]).name.split("-")[1])


def test_committed_records_found() -> None:
    assert len(COMMITTED) > len(LEGACY)
    assert LEGACY <= {p.name for p in COMMITTED}


@pytest.mark.parametrize(
    "name",
    ["", "pix2pix", "pix2pix-edges2fashion-s0", "a-b-c-s", "a-b-c-sx", "a-b-c-s01", "a-b-c-s0-"],
)
def test_malformed_name(name: str) -> None:
    with pytest.raises(ValueError, match=repr(name).replace("[", r"\[")):
        RunId.parse(name)


def test_same_setting() -> None:
    a = RunId("pix2pix", "edges2fashion", "none", 0, "0" * 16)
    assert a.same_setting(RunId("pix2pix", "edges2fashion", "none", 2))
    assert not a.same_setting(RunId("pix2pix", "edges2fashion", "dropout", 0))
    assert not a.same_setting(RunId("pix2pix", "edges2fashion", "none", 0, prefix="reference"))
