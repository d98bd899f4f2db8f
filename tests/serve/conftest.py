"""A tiny attacked victim served by the audit app: trained once per session."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from miabench.pipeline.attack import run_attack
from miabench.pipeline.train import train_victim
from tests.conftest import compose_cfg, write_aligned
from tests.pipeline.test_end_to_end import tiny_overrides


@dataclass
class ServedRun:
    """The tiny run: outputs root, data root, its attack folder and recorded overrides."""

    out: Path
    data: Path
    folder: Path
    overrides: list[str]


@pytest.fixture(scope="session")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> ServedRun:
    """A pix2pix victim overfit on 8 members (24 non-members), attacked by the
    reconstruction error, with the overrides its Hydra app would have recorded."""
    start = time.perf_counter()
    data = tmp_path_factory.mktemp("serve_data")
    write_aligned(data, "train", 32, seed=0)
    out = tmp_path_factory.mktemp("serve_out")
    overrides = [
        o
        for o in tiny_overrides(data, out, "attack=reconstruction", "trainer.max_epochs=25")
        if not o.startswith(("paths.root_dir=", "attack.membership_error"))
    ]
    cfg = compose_cfg("run_attack", overrides, root_dir=out)
    train_victim(cfg)
    mp = pytest.MonkeyPatch()
    # what `python -m miabench.run_attack <overrides>` records (no Hydra job in a test)
    mp.setattr("miabench.utils.provenance.hydra_overrides", lambda: list(overrides))
    try:
        results = run_attack(cfg)
    finally:
        mp.undo()
    print(f"served_run fixture: {time.perf_counter() - start:.1f} s")
    return ServedRun(out, data, results.parent, overrides)


def make_app(run: ServedRun, extra: Sequence[str] = ()) -> FastAPI:
    """The audit app over ``run`` (as ``python -m miabench.serve`` builds it)."""
    from miabench.serve.__main__ import build

    cfg = compose_cfg(
        "serve", ["serve.max_images=40", "serve.check_samples=4", *extra], root_dir=run.out
    )
    return build(cfg, lambda overrides: compose_cfg("run_attack", overrides, root_dir=run.out))
