"""Fault injection: runs killed by SIGKILL in training, attacking and table writing, rerun,
give the results of a run that was never interrupted; DP-SGD's privacy ledger survives a
resume; damaged cache files are named and recomputed."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.pipeline.test_cli import _fast

#: log lines that open each phase of `miabench.benchmark`, and the one that closes it
PHASES = {
    "training": ("logger csv →", "trained victim →"),
    "attacking": ("trained victim →", "results →"),
    "table writing": ("results →", "benchmark table →"),
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
    results = json.loads((out / "table" / "results.json").read_text().replace(str(out), "<out>"))
    return {
        "weights": {k: v.numpy().tobytes() for k, v in weights.items()},
        "results": results,
        "scores": (out / "table" / "scores.csv").read_text(),
        "table": (out / "table" / "embedded_pix2pix.csv").read_text(),
        "epochs": json.loads((victim / "victim.json").read_text())["epochs"],
    }


def _run_until(proc: subprocess.Popen, lines: queue.Queue, opening: str, closing: str, when):
    """Follow a run's output; ``when(now)`` → seconds after ``opening`` at which to SIGKILL.

    Returns (delay, killed_in_phase, seen): the kill counts only when the job had printed
    ``opening`` but not ``closing`` yet, i.e. it died inside the phase.
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
        for marker in {m for pair in PHASES.values() for m in pair}:
            if marker in line:
                seen.setdefault(marker, time.monotonic())
        if deadline is None and opening in line and when is not None:
            delay = when()
            deadline = time.monotonic() + delay
    in_phase = opening in seen and closing not in seen and proc.poll() is None
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
    _, _, seen = _run_until(proc, lines, "", "", None)
    assert proc.returncode == 0
    window = {phase: seen[end] - seen[start] for phase, (start, end) in PHASES.items()}

    faulty = tmp_path / "faulty"
    faulty.mkdir()
    overrides = [*tiny, f"table.out_dir={faulty}/table"]
    rng = np.random.default_rng(0)
    killed: list[str] = []
    for phase, (opening, closing) in PHASES.items():
        for _attempt in range(3):  # a kill that lands after the phase ended is drawn again
            proc, lines = _start(faulty, overrides)
            delay, in_phase, _ = _run_until(
                proc, lines, opening, closing, lambda p=phase: rng.uniform(0.05, 0.8) * window[p]
            )
            if in_phase:
                killed.append(f"{phase} +{delay:.2f}s")
                break
    assert len(killed) == len(PHASES), killed

    proc, lines = _start(faulty, overrides)
    _run_until(proc, lines, "", "", None)
    assert proc.returncode == 0
    assert _outputs(faulty) == _outputs(reference), killed
