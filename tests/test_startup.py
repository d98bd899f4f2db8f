"""The Hydra apps answer ``--help``, config errors and ``make_table`` without importing torch.

Not timed (speed is measured in experiments/bench/startup.py); what is checked is the cause of
slowness: whether torch, Lightning or the victims are in ``sys.modules`` when the app returns.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Runs an app's main as `python -m` would, then reports which heavy modules got imported.
_PROBE = """
import json, runpy, sys
sys.argv = [sys.argv[1]] + sys.argv[2:]
code = 0
try:
    runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
heavy = sorted(m for m in ("torch", "lightning", "torchmetrics", "miabench.victims") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(module: str, *args: str, cwd: Path) -> dict:
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "app",
    [
        "miabench.make_table",
        "miabench.train_victim",
        "miabench.run_attack",
        "miabench.benchmark",
        "miabench.report",
        "miabench.serve",
    ],
)
def test_help_does_not_import_torch(app: str, tmp_path: Path) -> None:
    out = _probe(app, "--help", cwd=tmp_path)
    assert out == {"code": 0, "heavy": []}


def test_config_error_does_not_import_torch(tmp_path: Path) -> None:
    out = _probe("miabench.train_victim", "victim=no_such_victim", cwd=tmp_path)
    assert out["code"] == 1
    assert out["heavy"] == []


def test_make_table_runs_without_torch(tmp_path: Path) -> None:
    # A table with no run records yet is refused (no empty table), still without torch.
    out = _probe("miabench.make_table", "table=shafran2021_t1", cwd=tmp_path)
    assert out == {"code": 1, "heavy": []}
    assert not (tmp_path / "outputs" / "tables" / "shafran2021_t1" / "shafran2021_t1.md").exists()


def test_table_tpr_column_matches_metrics_key() -> None:
    # results.table spells the key out so that it need not import metrics.roc (and torch).
    from miabench.metrics.roc import tpr_key
    from miabench.results.table import TPR_COLUMN

    assert tpr_key(0.01) == TPR_COLUMN
