"""The documents built from the code: the config reference is current, the site builds strictly."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "config_reference.py"
COMMITTED = ROOT / "docs" / "config_reference.md"


def test_config_reference_is_current(tmp_path: Path) -> None:
    """docs/config_reference.md equals a fresh run of scripts/config_reference.py."""
    out = tmp_path / "config_reference.md"
    subprocess.run([sys.executable, str(SCRIPT), "-o", str(out)], check=True, cwd=ROOT)
    assert out.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8"), (
        "docs/config_reference.md is stale: run python scripts/config_reference.py"
    )


def test_config_reference_is_deterministic(tmp_path: Path) -> None:
    """Two runs write the same bytes (no dates, paths or unordered walks)."""
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    for out in (first, second):
        subprocess.run([sys.executable, str(SCRIPT), "-o", str(out)], check=True, cwd=ROOT)
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs / mkdocstrings not installed (pip install -e '.[dev]')",
)
def test_site_builds_strict(tmp_path: Path) -> None:
    """mkdocs build --strict (every warning an error, docstrings included) succeeds."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "attacks" / "index.html").is_file()
    assert (tmp_path / "site" / "config_reference" / "index.html").is_file()
