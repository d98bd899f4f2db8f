"""Reference-model attacks end to end on a tiny population of 32x32 pix2pix victims."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import miabench.pipeline.signals as signals_module
from miabench.pipeline.attack import run_attack
from miabench.pipeline.population import locate_models, model_config
from miabench.pipeline.reference import run_reference_attack
from miabench.pipeline.run_id import RunId
from miabench.pipeline.signals import signal_key
from miabench.pipeline.train import locate_victim, train_victim
from miabench.utils.io import checksum_path, verify
from tests.conftest import compose_cfg


def write_population(root: Path, n: int, size: int = 32, seed: int = 0) -> None:
    """``n`` aligned A|B pairs whose difficulty varies a lot from sample to sample.

    B is a fixed function of A plus per-image texture whose amplitude is drawn per image:
    a victim reproduces a member's texture better than a non-member's, but how large the
    error is depends mostly on the amplitude, so a global threshold on the error (the
    reference-free attack) mixes hard members with easy non-members, which per-sample
    calibration against reference models (LiRA, RMIA) does not.
    """
    rng = np.random.default_rng(seed)
    folder = root / "train"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        coarse = rng.random((size // 4, size // 4, 3))
        a = np.kron(coarse, np.ones((4, 4, 1)))
        amplitude = rng.choice([0.05, 0.2, 0.4, 0.8])
        b = np.clip(1.0 - a + amplitude * (rng.random((size, size, 3)) - 0.5), 0, 1)
        pair = np.concatenate([a, b], axis=1)
        Image.fromarray((pair * 255).astype(np.uint8)).save(folder / f"{i:04d}.png")


def overrides(root: Path, out: Path, *extra: str) -> list[str]:
    """A target and 4 references (tiny U-Nets, 12 epochs) on a population of 48 samples."""
    return [
        "data=facades",
        f"data.root={root}",
        "data.image_size=32",
        "data.load_size=32",
        "data.batch_size=4",
        "data.eval_batch_size=64",
        "split.n_members=16",
        "split.n_nonmembers=32",
        "victim.module.generator.num_downs=5",
        "victim.module.generator.ngf=8",
        "victim.module.generator.dropout=0.0",
        "victim.module.discriminator.ndf=8",
        "victim.module.discriminator.n_layers=1",
        "victim.module.optimizer_g.lr=2e-3",
        "trainer.max_epochs=12",
        "trainer.enable_progress_bar=false",
        "logger={}",
        "callbacks.learning_rate_monitor=null",
        f"paths.root_dir={out}",
        "attack=reference",
        "reference.n_models=4",
        "reference.train=true",
        "reference.strength.subsets=2",
        "evaluation.device=cpu",
        *extra,
    ]


class RecordFits(pl.Callback):
    """Records every training of a run: its folder and the epoch it starts (or resumes) at.

    Hydra builds a fresh instance for every ``train_victim`` call.
    """

    starts: list[tuple[str, int]] = []

    def __init__(self) -> None:
        self.started = False

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.started:
            RecordFits.starts.append((trainer.default_root_dir, trainer.current_epoch))
            self.started = True


RECORD = "+callbacks.record._target_=tests.pipeline.test_reference.RecordFits"


@pytest.fixture
def population_root(tmp_path: Path) -> Path:
    root = tmp_path / "population"
    write_population(root, 48)
    return root


@pytest.mark.slow
def test_reference_run_resumes_reuses_and_beats_reference_free(
    population_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cfg = compose_cfg("run_attack", overrides(population_root, out, RECORD))

    # a killed training of reference 1, left behind with its checkpoint (the callback
    # interrupts the run at the start of epoch 1, after epoch 0 was checkpointed)
    crash = "+callbacks.crash._target_=tests.pipeline.test_end_to_end.CrashAfterEpoch"
    with pytest.raises((SystemExit, RuntimeError)):
        train_victim(
            model_config(compose_cfg("run_attack", overrides(population_root, out, crash)), 1)
        )
    crashed = locate_victim(model_config(cfg, 1))
    assert (crashed.directory / "checkpoints" / "last.ckpt").exists()

    RecordFits.starts = []
    results_path = run_reference_attack(cfg)
    trained = dict(RecordFits.starts)
    assert len(RecordFits.starts) == 5  # every model trained once
    assert trained[str(crashed.directory)] == 1  # reference 1 resumed after its epoch 0

    results = json.loads(results_path.read_text())
    loo = results["leave_one_out"]
    assert (
        set(results["attacks"])
        == set(loo)
        == {
            "reconstruction",
            "lira_online",
            "lira_offline",
            "rmia_online",
            "rmia_offline",
            "rmia_offline_tuned",
            "pixel_lira_online",
            "pixel_lira_offline",
        }
    )
    # 48 samples x 5 models, each trained on 24: 120 non-member pairs, but only 48 distinct
    # non-member samples, far from the 10/x = 1000 that resolve TPR at 1 % FPR: no value,
    # a note, and the TPR at the FPR the pairs do reach in its place
    assert loo["reconstruction"]["n_pairs"] == 240
    assert loo["reconstruction"]["n_member_pairs"] == 120
    assert loo["reconstruction"]["tpr_at_1pct_fpr"] is None
    assert "not observable" in loo["reconstruction"]["tpr_at_1pct_fpr_note"]
    tpr = {name: m["tpr_at_1pct_fpr_reached"] for name, m in loo.items()}
    for attack in ("lira_online", "lira_offline"):
        assert tpr[attack] > tpr["reconstruction"] + 0.1, tpr
    # RMIA compares each sample with the 23 non-members of its target (the authors' z): every
    # sample that beats them all ties at 1.0, so at 24 rows its low-FPR TPR is not resolved;
    # its ranking is read by AUC
    auc = {name: m["auc"] for name, m in loo.items()}
    assert auc["rmia_online"] > auc["reconstruction"] + 0.05, auc
    reference = results["run"]["reference"]
    assert reference["knowledge"] == "same_recipe" and len(reference["models"]) == 5
    assert [m["n_members"] for m in reference["models"]] == [24] * 5
    assert reference["pairs"] == [[1, 2], [3, 4]]
    assert all(m["training"]["wall_time_s"] > 0 for m in reference["models"])
    assert [p["n_references"] for p in results["strength_vs_references"]["lira_online"]] == [
        1,
        2,
        4,
    ]
    # tuning RMIA's a takes 2 references: the 1-reference point says so, the others are scored
    tuned = results["strength_vs_references"]["rmia_offline_tuned"]
    assert "at least 2" in tuned[0]["note"] and tuned[0]["n_subsets"] == 0
    assert all(p["pooled_auc_mean"] is not None for p in tuned[1:])
    folder = results_path.parent
    for plot in ("roc_loglog.png", "leave_one_out/roc_loglog.png", "strength_vs_references.png"):
        assert (folder / plot).stat().st_size > 0
    assert len(pd.read_csv(folder / "scores.csv")) == 48
    assert len(pd.read_csv(folder / "scores_leave_one_out.csv")) == 240
    # written through pipeline.record.write_csv, like the attack stage's: verified when read
    for name in ("scores.csv", "scores_leave_one_out.csv"):
        assert checksum_path(verify(folder / name)).is_file(), name
    assert RunId.parse(folder.name).prefix == "reference"

    # A rerun trains nothing and reads every model's signals back from the cache.
    signal_files = sorted((out / "outputs" / "cache" / "signals").glob("*.npz"))
    assert len(signal_files) == 5
    mtimes = [f.stat().st_mtime_ns for f in signal_files]
    results_path.unlink()
    RecordFits.starts = []
    assert run_reference_attack(cfg) == results_path
    assert RecordFits.starts == []
    assert [f.stat().st_mtime_ns for f in signal_files] == mtimes
    # A reference victim is an ordinary cached victim: train_victim finds it as it is.
    assert train_victim(model_config(cfg, 3)).weights.exists() and RecordFits.starts == []


@pytest.mark.slow
@pytest.mark.parametrize("n_models", [4, 2])
def test_never_trained_models_score_chance(
    population_root: Path, tmp_path: Path, n_models: int
) -> None:
    # distinct seeds: different random initialisations, none of which saw any data
    cfg = compose_cfg(
        "run_attack",
        overrides(
            population_root,
            tmp_path / "run",
            "trainer.max_epochs=0",
            f"reference.n_models={n_models}",
        ),
    )
    results = json.loads(run_reference_attack(cfg).read_text())
    for name, metrics in results["leave_one_out"].items():
        assert abs(metrics["auc"] - 0.5) < 0.1, (name, metrics["auc"])
    if n_models == 2:
        # 3 models in pairs: one reference per target, too few to tune RMIA's a; that attack
        # is skipped with the reason, the others still run (RMIA with a single reference)
        assert "at least 2" in results["skipped_attacks"]["rmia_offline_tuned"]
        assert {"rmia_online", "rmia_offline", "lira_online"} <= set(results["leave_one_out"])


def test_missing_models_are_refused_with_the_command(population_root: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        "run_attack", overrides(population_root, tmp_path / "run", "reference.train=false")
    )
    # `python -m miabench.run_attack attack=reference` runs the reference stage (its
    # `_pipeline_`), which refuses to start without its models and names the command
    with pytest.raises(FileNotFoundError) as err:
        run_attack(cfg)
    message = str(err.value)
    assert "model(s) [0, 1, 2, 3, 4]" in message and "reference.train=true" in message
    # one concurrent multirun over the models (the parallel launcher); with distinct seeds
    # each model's seed follows its index, the population seeds stay the run's
    assert "python -m miabench.train_victim -m hydra/launcher=parallel" in message
    assert "split.population.model=1,2,3,4 'seed=${mia_add:0,${split.population.model}}'" in message
    assert "split.seed=0 reference.seed=0" in message
    shared = compose_cfg(
        "run_attack",
        overrides(
            population_root, tmp_path / "run", "reference.train=false", "reference.seeds=shared"
        ),
    )
    with pytest.raises(FileNotFoundError) as err:
        run_reference_attack(shared)
    # shared seeds: every model trains with the run's seed, so none is set per model
    assert "split.population.model=1,2,3,4\n" in str(err.value) and "mia_add" not in str(err.value)


def test_knowledge_must_match_the_recipe(population_root: Path, tmp_path: Path) -> None:
    base = overrides(population_root, tmp_path / "run")
    with pytest.raises(ValueError, match="same_recipe but reference.recipe"):
        locate_models(compose_cfg("run_attack", [*base, "+reference.recipe.trainer.max_epochs=3"]))
    with pytest.raises(ValueError, match="recipe is empty"):
        locate_models(compose_cfg("run_attack", [*base, "reference.knowledge=other_architecture"]))
    cfg = compose_cfg(
        "run_attack",
        [
            *base,
            "reference.knowledge=smaller_generator",
            "+reference.recipe={victim.module.generator.ngf: 4}",
        ],
    )
    assert model_config(cfg, 0).victim.module.generator.ngf == 8  # the target as it is
    # the target's config names the same cached victim as the run's own (what the benchmark
    # trains before the reference stage looks for it)
    assert locate_victim(model_config(cfg, 0)).key == locate_victim(cfg).key
    assert model_config(cfg, 2).victim.module.generator.ngf == 4
    reference = model_config(cfg, 2)
    assert reference.split.population.model == 2
    # its own training seed, the run's population: split and matrix seeds stay 0
    assert reference.seed == 2 and reference.split.seed == 0
    assert reference.split.population.seed == 0 and reference.data.datamodule.seed == 0


def test_signal_cache_key_follows_the_signal_code(
    population_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_cfg("run_attack", overrides(population_root, tmp_path / "run"))
    victim = SimpleNamespace(key={"key": "abc"})
    key = signal_key(cfg, victim)
    assert "miabench.attacks.reference.signals" in key["code"]
    assert "miabench.attacks.reconstruction" in key["code"]  # what the signal code imports
    assert signal_key(cfg, victim)["key"] == key["key"]

    real = signals_module.module_closure

    def edited(modules):
        sources = dict(real(modules))
        sources["miabench.attacks.reference.signals"] += "\n# edited\n"
        return sources

    monkeypatch.setattr(signals_module, "module_closure", edited)
    assert signal_key(cfg, victim)["key"] != key["key"]
    monkeypatch.undo()
    other = compose_cfg(
        "run_attack",
        [*overrides(population_root, tmp_path / "run"), "reference.signals.compute.grid=4"],
    )
    assert signal_key(other, victim)["key"] != key["key"]
    # the attacker view's code is part of the key too (it shapes what the signals see)
    truncated = compose_cfg(
        "run_attack", [*overrides(population_root, tmp_path / "run"), "defense=output_truncation"]
    )
    assert "miabench.defenses.truncation" in signal_key(truncated, victim)["code"]
    assert "miabench.defenses.truncation" not in key["code"]
