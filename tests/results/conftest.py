"""Fixtures of the table tests."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def coarser_p_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables compute each bootstrap p-value from at least ``P_VALUE_REPLICATES`` (10^4)
    replicates so that Holm / BH can act on it; the table tests check which tests are run
    and how they are corrected, not the fourth digit of p, so 1000 replicates serve them at
    a tenth of the time. (The floor of a p-value at 10^4 is tested in tests/metrics.)"""
    for name, module in list(sys.modules.items()):
        if name.startswith("miabench.") and hasattr(module, "P_VALUE_REPLICATES"):
            monkeypatch.setattr(module, "P_VALUE_REPLICATES", 1000)
