"""experiments/rebuild_tables.py: every committed table rebuilt from its records, compared."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from miabench.pipeline.table import write_sweep_table
from tests.conftest import compose_cfg
from tests.pipeline.test_table_publish import _runs

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "rebuild_tables.py"


def _script():
    spec = importlib.util.spec_from_file_location("rebuild_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_rebuild_check_finds_identical_different_and_unrebuildable(tmp_path: Path) -> None:
    rebuild = _script()
    results = tmp_path / "results"
    cfg = compose_cfg("benchmark", [f"paths.results_dir={results}"], root_dir=tmp_path)
    write_sweep_table(cfg, _runs(tmp_path, seeds=(0, 1)), [])
    # a committed table whose records were never committed
    (results / "defenses_pix2pix").mkdir()
    (results / "defenses_pix2pix" / "defenses_pix2pix.md").write_text("# old\n")

    checks = {c.table: c for c in rebuild.check_all(results)}
    assert set(checks) == {"embedded_pix2pix", "defenses_pix2pix"}
    assert checks["embedded_pix2pix"].status == "identical", checks["embedded_pix2pix"].detail
    assert checks["defenses_pix2pix"].status == "error"
    assert "defenses_pix2pix/runs/*/results.json" in checks["defenses_pix2pix"].detail

    # one changed byte in the committed CSV is seen, and the committed folder is untouched
    csv = results / "embedded_pix2pix" / "embedded_pix2pix.csv"
    csv.write_text(csv.read_text().replace("0.", "1.", 1))
    (check,) = rebuild.check_all(results, ["embedded_pix2pix"])
    assert check.status == "different" and check.detail == "embedded_pix2pix.csv"
    assert rebuild.main(["--results-dir", str(results), "embedded_pix2pix"]) == 1


def test_a_table_does_not_claim_the_files_of_a_longer_named_table(tmp_path: Path) -> None:
    """embedded_mint and embedded_mint_by_sample share a folder: each owns its own files."""
    module = _script()
    for stem in ("embedded_mint", "embedded_mint_by_sample", "embedded_mint_by_sample_per_seed"):
        (tmp_path / f"{stem}.md").write_text(stem)
    assert [p.name for p in module._table_files(tmp_path, "embedded_mint")] == ["embedded_mint.md"]
    owned = [p.name for p in module._table_files(tmp_path, "embedded_mint_by_sample")]
    assert owned == ["embedded_mint_by_sample.md", "embedded_mint_by_sample_per_seed.md"]
