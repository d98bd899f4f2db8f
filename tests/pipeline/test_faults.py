"""Fault injection: runs killed by SIGKILL in training, attacking and table writing, rerun,
give the results of a run that was never interrupted; DP-SGD's privacy ledger survives a
resume; damaged cache files are named and recomputed."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from miabench.defenses.base import DefenseNotApplicable
from miabench.defenses.dpsgd import DPSGD
from miabench.pipeline.attack import run_attack
from miabench.pipeline.train import train_victim
from miabench.utils.io import CorruptFileError, discard
from tests.conftest import compose_cfg
from tests.defenses.conftest import TinySegVictim, datamodule, tiny_pix2pix
from tests.pipeline.test_cli import _fast
from tests.utils.test_io import DAMAGES

#: log lines that open each phase of `miabench.benchmark`, and the one that closes it
PHASES = {
    "training": ("logger csv →", "trained victim →"),
    # a victim trained in this run, or one a run before finished
    "attacking": (("trained victim →", "reusing cached victim"), "results →"),
    "table writing": ("results →", "benchmark table →"),
}


def _alternatives(marker: str | tuple[str, ...]) -> tuple[str, ...]:
    return (marker,) if isinstance(marker, str) else marker


#: every marker, for timing the uninterrupted run
MARKERS = {m for pair in PHASES.values() for part in pair for m in _alternatives(part)}
#: what each phase writes (removed when a kill attempt missed the phase)
PRODUCTS = {
    "training": Path("outputs/cache/victims"),
    "attacking": Path("outputs/attacks"),
    "table writing": Path("table"),
}


def _start(out: Path, overrides: list[str]) -> tuple[subprocess.Popen, queue.Queue]:
    """Start ``miabench.benchmark`` in its own process group; its output lines go to a queue
    (read by a thread, so the test can act between lines)."""
    env = {**os.environ, "MIABENCH_ROOT": str(out), "PYTHONUNBUFFERED": "1"}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "miabench.benchmark", *overrides]
    proc = subprocess.Popen(
        cmd,
        cwd=out,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, killed as a whole
    )
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _outputs(out: Path) -> dict[str, object]:
    """What a finished run produced, with its own folder's path taken out."""
    (victim,) = (out / "outputs" / "cache" / "victims").iterdir()
    weights = torch.load(victim / "victim.pt", weights_only=True)
    (run,) = (out / "table" / "runs").iterdir()
    results = json.loads((run / "results.json").read_text().replace(str(out), "<out>"))
    # when and where each stage ran differs between the runs by design
    results["run"].pop("provenance")
    return {
        "weights": {k: v.numpy().tobytes() for k, v in weights.items()},
        "results": results,
        "scores": (run / "scores.csv").read_text(),
        "table": (out / "table" / "embedded_pix2pix.csv").read_text(),
        "epochs": json.loads((victim / "victim.json").read_text())["epochs"],
    }


def _run_until(
    proc: subprocess.Popen,
    lines: queue.Queue,
    opening: tuple[str, ...],
    closing: str,
    when: Callable[[], float] | None,
) -> tuple[float | None, bool, dict[str, float]]:
    """Follow a run's output; ``when()`` → seconds after an ``opening`` marker at which to
    SIGKILL it (None: let it finish).

    Returns (delay, killed_in_phase, seen): the kill counts only when the job had printed an
    ``opening`` marker but not ``closing`` yet, i.e. it died inside the phase.
    """
    deadline = delay = None
    seen: dict[str, float] = {}
    while deadline is None or time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.005)
        except queue.Empty:
            continue
        if line is None:
            break
        for marker in MARKERS:
            if marker in line:
                seen.setdefault(marker, time.monotonic())
        if deadline is None and when is not None and any(o in line for o in opening):
            delay = when()
            deadline = time.monotonic() + delay
    opened = any(o in seen for o in opening)
    in_phase = opened and closing not in seen and proc.poll() is None
    if when is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return delay, in_phase, seen


@pytest.mark.slow
def test_sigkill_in_each_phase_then_rerun_equals_an_uninterrupted_run(
    aligned_root: Path, tmp_path: Path
) -> None:
    tiny = [o for o in _fast(aligned_root, tmp_path) if not o.startswith(("paths.", "hydra."))]
    tiny += ["trainer.max_epochs=6", "paths.root_dir=.", "hydra.job.chdir=false"]

    # the uninterrupted run; the times between its phase markers set the kill windows
    reference = tmp_path / "reference"
    reference.mkdir()
    proc, lines = _start(reference, [*tiny, f"table.out_dir={reference}/table"])
    _, _, seen = _run_until(proc, lines, (), "", None)
    assert proc.returncode == 0
    window = {
        phase: seen[end] - min(seen[o] for o in _alternatives(start) if o in seen)
        for phase, (start, end) in PHASES.items()
    }

    faulty = tmp_path / "faulty"
    faulty.mkdir()
    overrides = [*tiny, f"table.out_dir={faulty}/table"]
    rng = np.random.default_rng(0)
    killed: list[str] = []
    attempts = 0
    for i, (phase, (opening, closing)) in enumerate(PHASES.items()):
        for _attempt in range(3):  # a kill that lands after the phase ended is drawn again
            attempts += 1
            proc, lines = _start(faulty, overrides)
            delay, in_phase, _ = _run_until(
                proc,
                lines,
                _alternatives(opening),
                closing,
                lambda p=phase: rng.uniform(0.05, 0.8) * window[p],
            )
            if in_phase:
                killed.append(f"{phase} +{delay:.2f}s")
                break
            # missed: remove what this phase and the later ones wrote, so the next attempt
            # goes through the phase again
            for later in list(PRODUCTS)[i:]:
                shutil.rmtree(faulty / PRODUCTS[later], ignore_errors=True)
    # shown with -s: the figures of docs/reliability.md
    print("kill points:", killed, "attempts:", attempts)
    assert len(killed) == len(PHASES), killed

    proc, lines = _start(faulty, overrides)
    _run_until(proc, lines, (), "", None)
    assert proc.returncode == 0
    assert _outputs(faulty) == _outputs(reference), killed


def _dp_fit(dm: Any, directory: Path, max_epochs: int, ckpt: str | None = None) -> dict:
    pl.seed_everything(0)
    module = TinySegVictim(lr=0.5)
    defense = DPSGD(noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-3)
    defense.prepare_module(module)
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            *defense.callbacks(),
            ModelCheckpoint(dirpath=directory, save_last=True, save_on_train_epoch_end=True),
        ],
    )
    trainer.fit(module, datamodule=defense.prepare_datamodule(dm), ckpt_path=ckpt)
    return defense.report()


def test_dpsgd_resume_restores_the_privacy_accountant(aligned_root: Path, tmp_path: Path) -> None:
    dm = datamodule(aligned_root)
    straight = _dp_fit(dm, tmp_path / "straight", max_epochs=3)
    _dp_fit(dm, tmp_path / "killed", max_epochs=1)  # a job that stopped after epoch 1
    resumed = _dp_fit(dm, tmp_path / "resumed", 3, ckpt=str(tmp_path / "killed" / "last.ckpt"))
    assert resumed["steps"] == straight["steps"] == 3 * 2
    assert resumed["epsilon"] == pytest.approx(straight["epsilon"], rel=1e-12)
    assert resumed["epsilon_per_epoch"] == pytest.approx(straight["epsilon_per_epoch"])
    assert resumed["optimizer_steps"] == straight["optimizer_steps"] == [6]


def test_dpsgd_under_ddp_is_refused_with_a_clear_error() -> None:
    defense = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-3)
    (callback,) = defense.callbacks()
    trainer = SimpleNamespace(world_size=2, optimizers=[])
    with pytest.raises(DefenseNotApplicable, match="DDP .2 processes.*one device"):
        callback.on_fit_start(trainer, tiny_pix2pix())


def _victim_files(victim: Any, results: Path) -> dict[str, Path]:
    """Every kind of cached file of one run."""
    return {
        "victim.pt": victim.weights,
        "victim.json": victim.directory / "victim.json",
        "split manifest": victim.datamodule.manifest_path,
        "utility.csv": results.parent / "utility.csv",
        "utility_dataset.json": results.parent / "utility_dataset.json",
        "scores_reconstruction.csv": results.parent / "scores_reconstruction.csv",
        "results.json": results,
    }


#: provenance keys (when and where a stage ran) that a recomputation changes by design
VOLATILE = ("provenance", "timing", "environment")


def _content(path: Path) -> Any:
    """A file's content; torch archives by their tensors (torch.save names the archive's
    records after the temporary file it wrote, so equal weights differ in a few bytes), and
    JSON without its provenance (times and machine of the stage that wrote it)."""
    if path.suffix == ".pt":
        return {k: v.numpy().tobytes() for k, v in torch.load(path, weights_only=True).items()}
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        for node in (data, data.get("run")):
            if isinstance(node, dict):
                for key in VOLATILE:
                    node.pop(key, None)
        return data
    return path.read_bytes()


def _content_of_bytes(data: bytes, path: Path) -> Any:
    path.write_bytes(data)
    return _content(path)


@pytest.mark.slow
def test_each_damaged_cache_file_is_named_and_recomputed(
    aligned_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = [o for o in _fast(aligned_root, tmp_path) if not o.startswith("hydra.")]
    cfg = compose_cfg("run_attack", [*overrides, "trainer.max_epochs=1"])
    victim = train_victim(cfg)
    results = run_attack(cfg)
    weights = victim.weights.read_bytes()
    expected = {p: _content(p) for p in _victim_files(victim, results).values()}
    tried = []
    # both damages of the weights; one each, alternating, of the other kinds (the formats'
    # readers meet both damages in tests/utils/test_io.py)
    names = sorted(DAMAGES)
    for i, (kind, path) in enumerate(_victim_files(victim, results).items()):
        for damage in names if kind == "victim.pt" else [names[i % 2]]:
            hurt = DAMAGES[damage]
            caplog.clear()
            hurt(path)
            if path.parent == results.parent and path != results:
                # intermediate files are read only by a run that has no results yet
                discard(results)
            if kind == "victim.pt":
                # the attack stage cannot retrain: it names the file and the command
                results.unlink()
                with pytest.raises(CorruptFileError, match=r"victim\.pt.*train_victim"):
                    run_attack(cfg)
            victim = train_victim(cfg)
            assert run_attack(cfg, victim) == results
            assert str(path) in caplog.text, (kind, damage)
            for other, content in expected.items():
                assert _content(other) == content, (kind, damage, other)
            tried.append(f"{kind}/{damage}")
    assert len(tried) == 8 and {t.split("/")[1] for t in tried} == set(names)

    # a damaged resumable checkpoint: named, and the training starts over
    caplog.clear()
    last = victim.directory / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(weights[: len(weights) // 2])
    for name in ("victim.pt", "victim.json"):
        discard(victim.directory / name)
    train_victim(cfg)
    assert str(last) in caplog.text and "training from the start" in caplog.text
    assert _content(victim.weights) == _content_of_bytes(weights, tmp_path / "w.pt")
