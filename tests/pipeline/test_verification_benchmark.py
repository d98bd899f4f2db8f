"""LFW-style verification pairs in the face victim's utility, through the pipeline stages.

A tiny identity-per-folder training set and a tiny LFW layout (2 folds x (4 + 4) pairs,
``<name>/<name>_0001.jpg``) are written to tmp_path; the configs are composed as the
face-recognition experiments compose them (``data=faces_folder``, ``data.verification``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.errors import InstantiationException
from omegaconf import DictConfig, open_dict

from miabench.pipeline.attack import BENCHMARK, attack_dir, run_attack
from miabench.pipeline.common import build_datamodule
from miabench.pipeline.keys import split_key, victim_key
from miabench.pipeline.train import TrainedVictim, locate_victim, train_victim
from miabench.utils.io import atomic_write_json
from tests.conftest import compose_cfg
from tests.data.test_faces import write_lfw
from tests.pipeline.test_mint_pipeline import write_faces

AUDITOR = "mint_mlp_embedding"


def _cfg(root: Path, out: Path, *extra: str) -> DictConfig:
    overrides = [
        "data=faces_folder",
        f"data.root={root}",
        "data.image_size=16",
        "data.channels=1",
        "data.n_member_identities=3",
        "data.n_nonmember_identities=3",
        "data.batch_size=8",
        "data.eval_batch_size=32",
        "data.num_workers=0",
        "split.n_members=20",
        "split.n_nonmembers=20",
        "victim=iresnet_test",
        "attack=mint_mlp",
        "mint.mlp_epochs=2",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "evaluation.device=cpu",
        *extra,
    ]
    cfg = compose_cfg("run_attack", overrides, root_dir=out)
    # one auditor: the attack only has to run, the benchmark is what is checked
    cfg.attack = {AUDITOR: cfg.attack[AUDITOR]}
    return cfg


def _verification(pairs: Path, images: Path, name: str = "lfw_tiny") -> str:
    return f"data.verification={{pairs:{pairs},images:{images},name:{name}}}"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """(training faces root, LFW pairs.txt) in tmp_path."""
    write_faces(tmp_path / "faces", n_ids=6, per_id=8)
    return tmp_path / "faces", write_lfw(tmp_path / "lfw_root", folds=2, per_fold=4)


def test_results_report_the_verification_benchmark(
    layout: tuple[Path, Path], tmp_path: Path
) -> None:
    root, pairs = layout
    out = tmp_path / "out"
    cfg = _cfg(root, out, _verification(pairs, pairs.parent / "lfw"))
    victim = train_victim(cfg)
    results = json.loads(run_attack(cfg, victim).read_text())

    bench = results["utility_benchmark"]["lfw_tiny"]
    assert (bench["n_pairs"], bench["n_same"], bench["n_folds"]) == (16, 8, 2)
    assert bench["flip"] is True and bench["pairs"] == str(pairs)
    assert len(bench["fold_accuracies"]) == 2 and 0.0 <= bench["accuracy"] <= 1.0
    assert bench["accuracy"] == pytest.approx(sum(bench["fold_accuracies"]) / 2)
    # roles, gap and attacks as without a benchmark
    assert set(results["utility"]) == {"member", "nonmember"}
    assert "lfw_tiny" not in results["generalization_gap"]
    assert "accuracy" not in results["generalization_gap"]
    assert AUDITOR in results["attacks"]

    # cached like the rest of the utility pass: a rerun reads it back, it is not recomputed
    directory = attack_dir(cfg, victim)
    cached_path = directory / "utility_dataset.json"
    cached = json.loads(cached_path.read_text())
    assert cached[BENCHMARK] == results["utility_benchmark"]
    cached[BENCHMARK]["lfw_tiny"]["accuracy"] = -1.0  # a value the metric cannot produce
    # rewritten as the pipeline writes it (with its checksum), else it counts as damaged
    atomic_write_json(cached_path, cached, checksum=True)
    (directory / "results.json").unlink()
    rerun = json.loads(run_attack(cfg, victim).read_text())
    assert rerun["utility_benchmark"]["lfw_tiny"]["accuracy"] == -1.0

    # the pairs do not shape the victim: without them the same cached victim is found,
    # but its attack results live elsewhere (they lack the benchmark)
    plain = _cfg(root, out)
    same_victim = locate_victim(plain)
    assert same_victim.directory == victim.directory
    assert attack_dir(plain, same_victim) != directory
    results_plain = json.loads(run_attack(plain, same_victim).read_text())
    assert "utility_benchmark" not in results_plain
    assert BENCHMARK not in json.loads(
        (attack_dir(plain, same_victim) / "utility_dataset.json").read_text()
    )


def test_verification_is_not_in_the_victim_or_split_key(
    layout: tuple[Path, Path], tmp_path: Path
) -> None:
    root, pairs = layout
    plain = _cfg(root, tmp_path / "out")
    with_pairs = _cfg(root, tmp_path / "out", _verification(pairs, pairs.parent / "lfw"))
    flipless = _cfg(
        root,
        tmp_path / "out",
        _verification(pairs, pairs.parent / "lfw"),
        "+data.verification.flip=false",
    )
    # as if the config had no benchmark node at all (before data.verification existed)
    bare = _cfg(root, tmp_path / "out")
    with open_dict(bare):
        del bare.data["verification"]
        del bare.data.datamodule["benchmark"]
    keys = {victim_key(c, "manifest")["key"] for c in (plain, with_pairs, flipless, bare)}
    assert len(keys) == 1
    assert len({split_key(c) for c in (plain, with_pairs, flipless, bare)}) == 1
    # attack results: unchanged key without pairs, a separate one per benchmark setting
    victim = TrainedVictim(tmp_path / "victim", {"key": keys.pop()}, datamodule=None)
    dirs = [attack_dir(c, victim) for c in (plain, with_pairs, flipless, bare)]
    assert dirs[0] == dirs[3] and len(set(dirs)) == 3
    # built into the data module for the victim to find
    assert build_datamodule(with_pairs).benchmark.folds == 2
    assert build_datamodule(plain).benchmark is None


def test_missing_pairs_file_names_the_config_key_and_path(
    layout: tuple[Path, Path], tmp_path: Path
) -> None:
    root, pairs = layout
    missing = tmp_path / "no_such" / "pairs.txt"
    cfg = _cfg(root, tmp_path / "out", _verification(missing, pairs.parent / "lfw"))
    with pytest.raises(InstantiationException, match=f"data.verification.pairs: {missing}"):
        build_datamodule(cfg)
