"""Nearest-identity auditor: a diagnostic beside MINT, not in the paper.

It learns what an auditor on the model outcome can learn from identity geometry alone: the
directions (normalised mean embeddings) of the identities it saw as members and as
non-members in its training samples. A sample's score is its cosine similarity to the
nearest member identity minus that to the nearest non-member identity.

Why it exists: on identity-labelled data the MINT auditors may learn *where* the
calibration identities lie instead of membership. This auditor does only that, so its
result shows what that shortcut is worth on the test half:

- auditor halves split by sample (test identities seen in training): it scores identities
  it memorised, so a high AUC there is identity leakage, not membership;
- halves split by identity (``evaluation.calibration_by_group``): a margin-trained victim
  (CosFace/ArcFace) pushes each member identity away from the others, while an unseen
  identity falls among the learned ones. Test members then lie *far* from the calibration
  member identities and test non-members near them, so the shortcut scores below chance
  (measured on the embedded proxy: AUC 0.25). A MINT auditor below chance on the same
  victim has learned the shortcut.

Written by hand: a nearest-centroid score over groups read from the sample ids is a few
lines of tensor code, and no library ships it as an auditor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from miabench.attacks.base import Attack
from miabench.attacks.mint import BalancedDraw
from miabench.metrics.calibration import group_of
from miabench.victims.base import Signals


class IdentityProximityAuditor(Attack):
    """Score = max cosine to the member identities seen − max cosine to the non-member ones.

    Args:
        name: attack name (config key).
        n_train: training samples, the first N/2 members and N/2 non-members of the
            calibration half (the same draw as the MINT auditors' ``n_train``).
        signal: the embedding signal to read (``embedding``, the model outcome).
    """

    trainable = True
    #: closer to a member identity than to any non-member identity → member
    decision_threshold = 0.0

    def __init__(self, name: str, n_train: int = 1000, signal: str = "embedding") -> None:
        super().__init__(name)
        if n_train < 2:
            raise ValueError(f"attack.{name}.n_train must be >= 2, got {n_train}")
        self.n_train = n_train
        self.signal = signal
        self.requires = ("sample_id", signal)
        self.centroids: dict[int, torch.Tensor] = {}
        self.report: dict[str, Any] = {}

    def fit(self, batches: Callable[[], Iterator[tuple[Signals, torch.Tensor]]]) -> None:
        """Sum the normalised embeddings of each identity among the first N balanced samples."""
        draw = BalancedDraw(self.n_train)
        sums: dict[int, dict[str, torch.Tensor]] = {0: {}, 1: {}}
        fitted: list[str] = []
        for signals, labels in batches():
            embedding = F.normalize(signals[self.signal].float(), dim=1).to(self.device)
            keep = draw.keep(labels).tolist()
            for row, (sample_id, label) in enumerate(
                zip(signals["sample_id"], labels.long().tolist(), strict=True)
            ):
                if not keep[row]:
                    continue
                fitted.append(sample_id)
                group = group_of(sample_id)
                total = sums[label].get(group)
                sums[label][group] = embedding[row] if total is None else total + embedding[row]
            if draw.full:
                break
        draw.check(self.name)
        self.fitted_on = frozenset(fitted)
        self.centroids = {
            label: F.normalize(torch.stack(list(groups.values())), dim=1)
            for label, groups in sums.items()
        }
        self.report = {
            **draw.report(),
            "member_identities": len(sums[1]),
            "nonmember_identities": len(sums[0]),
        }

    @torch.no_grad()
    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        if not self.centroids:
            raise RuntimeError(f"attack.{self.name}: score() before fit()")
        embedding = F.normalize(signals[self.signal].float(), dim=1).to(self.device)
        near_member = (embedding @ self.centroids[1].T).amax(1)
        near_nonmember = (embedding @ self.centroids[0].T).amax(1)
        return {
            "score": near_member - near_nonmember,
            "cos_member_identity": near_member,
            "cos_nonmember_identity": near_nonmember,
        }

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "signal": self.signal,
            "n_train": self.n_train,
            "decision_threshold": self.decision_threshold,
            **self.report,
        }
