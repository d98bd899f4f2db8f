"""The built wheel runs on its own: configs inside the package, all three stages.

Builds the wheel, installs it into a fresh virtualenv that sees the system's packages
(torch etc. are not reinstalled) and runs ``miabench-benchmark debug=fast`` from an empty
folder. The import must come from the wheel, not from this source tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package() -> None:
    # conf/ is mapped to miabench.conf, so setuptools' discovery is off and the list is by hand
    tomllib = pytest.importorskip("tomllib")
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    src = REPO / "src"
    found = {".".join(p.parent.relative_to(src).parts) for p in src.rglob("__init__.py")}
    assert set(setup["packages"]) == found | {"miabench.conf"}, "update pyproject's packages"
    assert setup["package-dir"] == {"": "src", "miabench.conf": "conf"}
    assert (REPO / "conf" / "__init__.py").is_file()


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_wheel_installs_and_runs_the_benchmark_from_an_empty_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MIABENCH_ROOT")}
    env.update(MIABENCH_HASH_CACHE="off", PYTHONUNBUFFERED="1", WANDB_MODE="offline")
    dist = tmp_path / "dist"
    # no build isolation: the build backend (setuptools) is taken from this environment
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(dist), str(REPO)],
        tmp_path, env,
    )  # fmt: skip
    (wheel,) = dist.glob("miabench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "miabench/conf/__init__.py",
        "miabench/conf/benchmark.yaml",
        "miabench/conf/victim/pix2pix.yaml",
        "miabench/conf/experiment/embedded/pix2pix_edges2fashion.yaml",
        "miabench/conf/local/README.md",
        "miabench/targets/shafran2021_table1.csv",
        "miabench/data_sources/registry/facades.yaml",
    ):
        assert shipped in names, shipped
    assert not any(name.startswith("conf/") for name in names)  # conf/ ships as miabench/conf
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, env)
    bin_dir = venv / "bin"
    _run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         str(wheel)],
        tmp_path, env,
    )  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run(
        [str(bin_dir / "python"), "-c", "import miabench; print(miabench.__file__)"], empty, env
    ).strip()
    assert Path(where).is_relative_to(venv), f"miabench imported from {where}, not the wheel"
    assert not Path(where).is_relative_to(REPO)

    # every console script answers --help from the wheel alone (the Hydra apps without the
    # source tree's conf/)
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for script in scripts:
        text = _run([str(bin_dir / script), "--help"], empty, env)
        assert "usage" in text.lower() or "powered by Hydra" in text, script
    assert "powered by Hydra" in _run([str(bin_dir / "miabench-table"), "--help"], empty, env)
    # the prefetch list is derived from the configs the wheel ships
    listed = _run(
        [str(bin_dir / "python"), "-m", "miabench.prefetch_weights", "--list"], empty, env
    )
    assert "torchvision:wide_resnet50_2.IMAGENET1K_V1" in listed and "victim=ssdlite" in listed
    log = _run(
        [str(bin_dir / "miabench-benchmark"), "debug=fast"],
        empty,
        env,
    )
    # a debug run is not the table's documented command: its table goes under outputs/
    assert not (empty / "results").exists()
    table = empty / "outputs" / "tables" / "embedded_pix2pix"
    (run,) = (table / "runs").iterdir()
    results = json.loads((run / "results.json").read_text())
    assert set(results["attacks"]) == {"reconstruction", "membership_error"}
    assert (table / "embedded_pix2pix.md").is_file()
    assert "💡 Tip" not in log
