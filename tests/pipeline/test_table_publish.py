"""Where a benchmark's table goes (results/ only for its documented command), the run records
kept beside every table, and rebuilding a table from those records alone."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from miabench.pipeline.table import (
    RUNS,
    NoRunRecords,
    copy_records,
    documented_commands,
    is_documented_run,
    make_table,
    rebuild_table,
    route_table,
    write_sweep_table,
)
from tests.conftest import compose_cfg
from tests.results.test_table import write_seed_run


def _cfg(tmp_path: Path, *overrides: str, config: str = "benchmark"):
    # a fake results/ inside the test's folder: nothing can reach the repository's
    return compose_cfg(
        config,
        [*overrides, f"paths.results_dir={tmp_path}/results"],
        root_dir=tmp_path,
    )


def _runs(tmp_path: Path, seeds=(0,)) -> list[Path]:
    """Finished runs as a job leaves them under outputs/ (attack folders named with a hash)."""
    out = []
    for seed in seeds:
        folder = tmp_path / "outputs" / "attacks" / f"pix2pix-facades-none-s{seed}-{seed:016x}"
        write_seed_run(folder, seed=seed, shift=1.0)
        (folder / "roc_loglog.png").write_bytes(b"png")
        (folder / "victim.pt").write_bytes(b"not a record")
        out.append(folder / "results.json")
    return out


def test_documented_commands_are_read_from_chained_shell_lines() -> None:
    command = (
        "python -m miabench.run_attack -m experiment=a n=1,2 && "
        "python -m miabench.benchmark -m experiment=b seed=0,1 ; "
        "python -m miabench.benchmark experiment=c  # a comment=1"
    )
    assert documented_commands(command) == [["experiment=b", "seed=0,1"], ["experiment=c"]]
    assert documented_commands(command, app="run_attack") == [["experiment=a", "n=1,2"]]
    assert documented_commands("bash experiments/bench/x.sh --by-sample") == []


def test_only_the_documented_command_publishes(tmp_path: Path) -> None:
    table = _cfg(tmp_path, "experiment=defenses/pix2pix_edges2fashion").table
    assert table.name == "defenses_pix2pix"  # the experiment names its own table
    documented = ["experiment=defenses/pix2pix_edges2fashion", "seed=0,1,2"]
    assert is_documented_run(table, documented)[0]
    # order, `table=<itself>`, the launcher and a longer seed list do not matter
    assert is_documented_run(
        table, ["seed=0,1,2,3,4", "hydra/launcher=slurm", "table=defenses_pix2pix", documented[0]]
    )[0]
    publish, why = is_documented_run(table, [*documented, "debug=fast"])
    assert not publish and "debug=fast" in why
    assert not is_documented_run(table, [documented[0], "trainer.max_epochs=1"])[0]
    # the default benchmark's command lists no seed: another seed is another table
    default = _cfg(tmp_path).table
    assert default.name == "embedded_pix2pix"
    assert is_documented_run(default, [])[0]
    assert not is_documented_run(default, ["seed=1"])[0]
    assert is_documented_run(default, ["seed=1", "table.publish=true"])[0] is False
    assert is_documented_run(_cfg(tmp_path, "table.publish=true").table, ["seed=1"])[0]


def test_a_debug_run_leaves_results_untouched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _cfg(tmp_path, "debug=fast")
    with caplog.at_level(logging.INFO, logger="miabench.pipeline.table"):
        md = write_sweep_table(cfg, _runs(tmp_path), ["debug=fast"])
    assert not (tmp_path / "results").exists()
    expected = tmp_path / "outputs" / "tables" / "embedded_pix2pix"
    assert md == expected / "embedded_pix2pix.md" and md.is_file()
    assert "not the documented command" in caplog.text and str(expected) in caplog.text


def test_the_documented_command_publishes_and_rebuilds_identical(tmp_path: Path) -> None:
    runs = _runs(tmp_path, seeds=(0, 1))
    cfg = _cfg(tmp_path)
    assert route_table(cfg, [])
    md = write_sweep_table(cfg, runs, [])
    out = tmp_path / "results" / "embedded_pix2pix"
    assert md == out / "embedded_pix2pix.md"
    records = sorted(p.name for p in (out / RUNS).iterdir())
    assert records == [r.parent.name for r in runs]
    record = out / RUNS / records[0]
    assert {p.name for p in record.iterdir()} == {"results.json", "scores.csv", "roc_loglog.png"}
    assert "Result files: 2" in md.read_text()
    written = {p.name: p.read_bytes() for p in out.glob("embedded_pix2pix*")}
    assert len(written) == 4  # md, csv and their per-seed views

    # a fresh clone: the runs under outputs/ are gone, only the committed folder is left
    shutil.rmtree(tmp_path / "outputs")
    for path in out.glob("embedded_pix2pix*"):
        path.unlink()
    rebuild_table(_cfg(tmp_path, "table=embedded_pix2pix", config="make_table"))
    assert {p.name: p.read_bytes() for p in out.glob("embedded_pix2pix*")} == written


def test_no_records_is_an_error_naming_glob_and_command(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "table=defenses_pix2pix", config="make_table")
    with pytest.raises(NoRunRecords) as err:
        make_table(cfg)
    message = str(err.value)
    assert f"{tmp_path}/results/defenses_pix2pix/runs/*/results.json" in message
    assert cfg.table.command in message
    assert not (tmp_path / "results" / "defenses_pix2pix" / "defenses_pix2pix.md").exists()


def test_a_rerun_of_a_seed_replaces_its_older_record(tmp_path: Path) -> None:
    (old,) = _runs(tmp_path)
    copy_records(tmp_path / "table", [old])
    newer = tmp_path / "outputs" / "attacks" / "pix2pix-facades-none-s0-ffffffffffffffff"
    write_seed_run(newer, seed=0, shift=2.0)
    (other,) = _runs(tmp_path / "b", seeds=(1,))
    copied = copy_records(tmp_path / "table", [newer / "results.json", other])
    kept = sorted(p.name for p in (tmp_path / "table" / RUNS).iterdir())
    assert kept == sorted(p.parent.name for p in copied)
    assert old.parent.name not in kept  # same setting and seed: superseded
