"""The calibration and test halves of one attack run, drawn from the run's seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from miabench.metrics.calibration import (
    calibration_split,
    group_of,
    grouped_calibration_split,
    stratum_of,
)
from miabench.pipeline.seeds import SeedStreams

ROLES = {"member": 1, "nonmember": 0}


@dataclass
class Halves:
    """Who is in the calibration half and the test half of one attack run.

    Attributes:
        table: ``sample_id``, ``role``, ``label`` (1 member / 0 non-member), ``split``.
        is_calibration: (N,) bool, in the table's row order.
        test: (N,) bool, the rows metrics are computed on (every row when no calibration).
        calibration: role → calibration sample ids in the order trainable attacks see them.
        test_groups: the test rows' groups (identities) when intervals resample whole
            groups (``evaluation.bootstrap_by_group``), else None.
    """

    table: pd.DataFrame
    is_calibration: np.ndarray
    test: np.ndarray
    calibration: dict[str, list[str]]
    test_groups: np.ndarray | None


def split_halves(cfg: DictConfig, utility: pd.DataFrame) -> Halves:
    """Draw the calibration/test halves over the utility pass's samples (seeded by the run)."""
    table = utility[["sample_id", "role"]].copy()
    table["label"] = table["role"].map(ROLES)
    if cfg.evaluation.get("calibration_by_group"):
        # learning attacks on identity-labelled data (MINT) must be tested on identities they
        # did not learn from, or they score identities instead of membership; with a
        # data.stratum_pattern (the proxy's class) both halves keep the same class mix per role
        groups = table["sample_id"].map(group_of)
        pattern = cfg.data.get("stratum_pattern")
        is_cal = grouped_calibration_split(
            table["label"].to_numpy(),
            groups.to_numpy(),
            cfg.evaluation.calibration_fraction,
            SeedStreams.of(cfg).halves,
            strata=None if pattern is None else groups.map(lambda g: stratum_of(g, pattern)),
        )
    else:
        is_cal = calibration_split(
            table["label"].to_numpy(),
            cfg.evaluation.calibration_fraction,
            SeedStreams.of(cfg).halves,
        )
    table["split"] = np.where(is_cal, "calibration", "test")
    # Trainable attacks learn from the first N calibration samples of each role (MINT's
    # n_train); the manifest lists each identity's images together, so they are streamed in a
    # seeded random order, or N = 1 000 would come from a handful of identities.
    order = np.random.default_rng(SeedStreams.of(cfg).calibration_order)
    calibration = {}
    for role in ROLES:
        ids = table.loc[is_cal & (table["role"] == role), "sample_id"].tolist()
        calibration[role] = [ids[i] for i in order.permutation(len(ids))]
    test = ~is_cal if is_cal.any() else np.ones_like(is_cal)
    # identity-labelled data: the test metrics' uncertainty is set by how many identities the
    # test half holds, not how many images (metrics.bootstrap.resample_weights)
    by_group = bool(cfg.evaluation.bootstrap_by_group)
    test_groups = table["sample_id"].map(group_of).to_numpy()[test] if by_group else None
    return Halves(table, is_cal, test, calibration, test_groups)
