"""The MINT table's accuracy interval: recorded where results.json has one, else Wilson."""

import math

import pytest

from miabench.results.mint_table import accuracy_interval


def test_wilson_from_counts_matches_the_formula():
    k, n, z = 80, 100, 1.959963984540054
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    low, high = accuracy_interval({"accuracy_at_decision": 0.8, "n_test": 100})
    assert (low, high) == pytest.approx((centre - half, centre + half))


def test_recorded_interval_wins_and_missing_counts_give_none():
    recorded = {"accuracy_at_decision": 0.8, "n_test": 100, "accuracy_at_decision_ci95": [0.7, 0.9]}
    assert accuracy_interval(recorded) == (0.7, 0.9)
    assert accuracy_interval({"accuracy_at_decision": 0.8}) == (None, None)


def test_the_calibrated_thresholds_interval_is_not_the_decisions():
    """accuracy_ci95 belongs to the accuracy at the calibrated threshold, not to the 0.5
    decision the table shows: the shown accuracy must lie inside its own interval."""
    entry = {"accuracy_at_decision": 0.46, "n_test": 1000, "accuracy_ci95": [0.47, 0.49]}
    low, high = accuracy_interval(entry)
    assert low < 0.46 < high
    assert (low, high) == accuracy_interval({"accuracy_at_decision": 0.46, "n_test": 1000})
