"""The victim cache key changes with what shapes a victim, and only with that."""

from __future__ import annotations

import shutil
from pathlib import Path

import miabench
import miabench.victims.pix2pix
from miabench.pipeline import code_hash, keys
from miabench.pipeline.train import locate_victim
from tests.conftest import compose_cfg
from tests.pipeline.test_end_to_end import tiny_overrides


def _key(root: Path, out: Path, *extra: str) -> str:
    return locate_victim(compose_cfg("train_victim", tiny_overrides(root, out, *extra))).key["key"]


def test_key_tracks_what_shapes_the_victim(aligned_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = _key(aligned_root, out)
    assert _key(aligned_root, out) == base
    # Where it runs and how it logs do not change what is learned.
    assert _key(aligned_root, out, "trainer.accelerator=gpu", "logger=wandb") == base
    assert _key(aligned_root, out, "victim.module.generator.dropout=0") == base  # 0 == 0.0
    # The same content under another root: same manifest content, same victim.
    moved = tmp_path / "moved"
    shutil.copytree(aligned_root, moved)
    assert _key(moved, out) == base
    # Training, architecture, split and seed do.
    for change in (
        "trainer.max_epochs=41",
        "victim.module.generator.ngf=8",
        "split.n_members=9",
        "seed=1",
    ):
        assert _key(aligned_root, out, change) != base, change


def test_code_version_follows_the_victims_package(monkeypatch) -> None:
    before = code_hash.code_version()
    monkeypatch.setattr(miabench, "__version__", "0.0.0-test")
    assert code_hash.code_version() != before


def test_code_version_covers_the_victims_own_code(aligned_root: Path, tmp_path: Path) -> None:
    cfg = compose_cfg("train_victim", tiny_overrides(aligned_root, tmp_path))
    sources = code_hash.code_sources(cfg)
    # the module, its networks, what they import (transitively), and nothing unrelated
    for module in (
        "miabench.victims.pix2pix",
        "miabench.victims.base",
        "miabench.victims.nets.unet",
        "miabench.victims.nets.patchgan",
        "miabench.victims.nets.norm",
        "miabench.metrics.utility",
    ):
        assert module in sources, module
    assert not any(m.startswith("miabench.attacks") for m in sources)
    assert sources["miabench.victims.pix2pix"] == Path(miabench.victims.pix2pix.__file__).read_text(
        encoding="utf-8"
    )

    # an edit to one of those files changes the key; the key is the hash of these sources
    edited = dict(sources)
    edited["miabench.victims.nets.unet"] += "\n# edited\n"
    assert code_hash.stable_hash({"version": miabench.__version__, "sources": edited}) != (
        code_hash.code_version(cfg)
    )
    assert code_hash.stable_hash({"version": miabench.__version__, "sources": sources}) == (
        code_hash.code_version(cfg)
    )


def test_split_key_ignores_how_data_is_batched(aligned_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = keys.split_key(compose_cfg("train_victim", tiny_overrides(aligned_root, out)))
    batched = tiny_overrides(aligned_root, out, "data.batch_size=2", "data.eval_batch_size=3")
    assert keys.split_key(compose_cfg("train_victim", batched)) == base
    assert (
        keys.split_key(compose_cfg("train_victim", tiny_overrides(aligned_root, out, "seed=1")))
        != base
    )


def test_attack_folder_key_follows_attack_and_metrics_code(
    aligned_root: Path, tmp_path: Path, monkeypatch
) -> None:
    """Editing an attack or a metric gives a new attack folder (no stale scores)."""
    from miabench.pipeline.attack import attack_dir

    cfg = compose_cfg("run_attack", tiny_overrides(aligned_root, tmp_path))
    victim = locate_victim(cfg)
    base = attack_dir(cfg, victim)
    assert attack_dir(cfg, victim) == base
    real_source = code_hash._source
    for module in ("miabench.attacks.reconstruction", "miabench.metrics.roc"):
        edited = tmp_path / f"{module}.py"
        edited.write_text(real_source(module).read_text(encoding="utf-8") + "\n# edited\n")
        monkeypatch.setattr(
            code_hash,
            "_source",
            lambda m, module=module, edited=edited: edited if m == module else real_source(m),
        )
        assert attack_dir(cfg, victim) != base, module
        monkeypatch.setattr(code_hash, "_source", real_source)
    # an attack that is not run does not shape the folder
    edited = tmp_path / "detection.py"
    edited.write_text("# another attack\n")
    monkeypatch.setattr(
        code_hash,
        "_source",
        lambda m: edited if m == "miabench.attacks.detection" else real_source(m),
    )
    assert attack_dir(cfg, victim) == base
