"""The calibration split: stratified by class, whole groups, balanced strata."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from miabench.metrics.calibration import (
    calibration_split,
    group_of,
    grouped_calibration_split,
    stratum_of,
)


def test_calibration_split_is_stratified_and_deterministic() -> None:
    labels = np.array([1] * 300 + [0] * 100)
    mask = calibration_split(labels, 0.5, seed=7)
    assert mask.dtype == bool
    assert mask[labels == 1].sum() == 150 and mask[labels == 0].sum() == 50
    np.testing.assert_array_equal(mask, calibration_split(labels, 0.5, seed=7))
    assert not np.array_equal(mask, calibration_split(labels, 0.5, seed=8))
    assert not calibration_split(labels, 0.0, seed=7).any()
    with pytest.raises(ValueError):
        calibration_split(labels, 1.0, seed=7)


def test_grouped_calibration_split_keeps_identities_whole() -> None:
    rng = np.random.default_rng(0)
    groups = np.array([f"id{i}" for i in rng.integers(0, 40, 1000)])
    labels = (np.char.replace(groups, "id", "").astype(int) < 20).astype(int)
    mask = grouped_calibration_split(labels, groups, 0.75, seed=3)
    assert not set(groups[mask]) & set(groups[~mask])
    for cls in (0, 1):
        share = mask[labels == cls].mean()
        assert abs(share - 0.75) < 0.05 and (~mask[labels == cls]).any()
    assert (mask == grouped_calibration_split(labels, groups, 0.75, seed=3)).all()
    assert not grouped_calibration_split(labels, groups, 0.0, seed=3).any()
    with pytest.raises(ValueError, match="1 group"):
        grouped_calibration_split(np.array([1, 1, 0, 0]), ["a", "a", "b", "c"], 0.5, seed=0)
    assert group_of("id7/img.png") == "id7"


def test_grouped_calibration_split_gives_both_halves_the_same_identity_sizes() -> None:
    # identity sizes spread over 5..300 rows, the same spread for members and non-members:
    # within each role the test identities must be as large as the calibration ones, or a
    # feature that tracks identity size (e.g. how typical an identity is) flips between the
    # halves. A fill by row count (greedy) leaves the large identities for the test side.
    rng = np.random.default_rng(2)
    sizes = np.round(np.geomspace(5, 300, 48)).astype(int)
    groups, labels = [], []
    for role in (0, 1):
        for i, size in enumerate(rng.permutation(sizes)):
            groups += [f"r{role}_g{i:02d}"] * int(size)
            labels += [role] * int(size)
    groups, labels = np.array(groups), np.array(labels)
    size = pd.Series(groups).map(pd.Series(groups).value_counts()).to_numpy()
    for seed in range(5):
        mask = grouped_calibration_split(labels, groups, 0.75, seed=seed)
        assert not set(groups[mask]) & set(groups[~mask])
        for role in (0, 1):
            cal, test = mask & (labels == role), ~mask & (labels == role)
            # 36 + 12 identities per role, and about 75 % of the rows
            assert (
                len(set(groups[cal])) == 36
                and abs(cal.sum() / (labels == role).sum() - 0.75) < 0.08
            )
            median_cal = np.median([size[groups == g][0] for g in set(groups[cal])])
            median_test = np.median([size[groups == g][0] for g in set(groups[test])])
            assert 0.7 < median_test / median_cal < 1.4
        # identity size says nothing about membership on the test half
        assert abs(roc_auc_score(labels[~mask], size[~mask]) - 0.5) < 0.15


def test_grouped_calibration_split_stratified_keeps_the_stratum_mix() -> None:
    # members over-represented in stratum "a" among some groups, "b" among others: a split
    # by group alone can leave a stratum member-heavy on one side and member-light on the other
    rng = np.random.default_rng(1)
    groups = np.array([f"g{i:02d}" for i in rng.integers(0, 80, 6000)])
    number = np.char.replace(groups, "g", "").astype(int)
    labels = (number % 2).astype(int)
    strata = np.where(number < 40, "a", "b")
    mask = grouped_calibration_split(labels, groups, 0.75, seed=0, strata=strata)
    assert not set(groups[mask]) & set(groups[~mask])
    for stratum in ("a", "b"):
        for cls in (0, 1):
            cell = (strata == stratum) & (labels == cls)
            assert abs(mask[cell].mean() - 0.75) < 0.05  # every cell split 3:1
    with pytest.raises(ValueError, match="stratum b"):
        grouped_calibration_split(
            np.array([1, 1, 1, 0, 0, 0]),
            ["a", "c", "d", "e", "f", "g"],
            0.5,
            seed=0,
            strata=np.array(["a", "a", "b", "a", "a", "b"]),
        )


def test_stratum_of_is_the_first_match_and_refuses_a_name_without_one() -> None:
    assert stratum_of("c3_017", r"^c\d+") == "c3"
    assert stratum_of("anyone", None) == ""
    with pytest.raises(ValueError, match="'x9' does not match"):
        stratum_of("x9", r"^c\d+")
