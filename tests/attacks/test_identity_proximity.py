"""The nearest-identity diagnostic: its score against a numpy reference, identity leakage
under a by-sample split, and the inversion a margin-trained geometry causes under a split by
identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from miabench.attacks.identity_proximity import IdentityProximityAuditor


def _batches(embedding: np.ndarray, ids: list[str], labels: np.ndarray, batch: int = 7):
    def batches():
        for start in range(0, len(ids), batch):
            rows = slice(start, start + batch)
            signals = {
                "sample_id": ids[rows],
                "embedding": torch.tensor(embedding[rows], dtype=torch.float32),
            }
            yield signals, torch.tensor(labels[rows], dtype=torch.float32)

    return batches


def _score(auditor: IdentityProximityAuditor, embedding: np.ndarray, ids: list[str]) -> np.ndarray:
    signals = {"sample_id": ids, "embedding": torch.tensor(embedding, dtype=torch.float32)}
    return auditor.score(signals)["score"].numpy()


def test_score_matches_a_nearest_centroid_reference() -> None:
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(60, 8))
    ids = [f"{'m' if i < 30 else 'n'}{i % 5}/{i}.png" for i in range(60)]
    labels = (np.arange(60) < 30).astype(int)
    order = rng.permutation(60)  # members and non-members interleaved in the stream
    embedding, ids, labels = embedding[order], [ids[i] for i in order], labels[order]
    auditor = IdentityProximityAuditor("nearest_identity", n_train=40)
    auditor.fit(_batches(embedding, ids, labels))
    # reference: the first 20 members and 20 non-members of the stream
    unit = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    used = np.concatenate([np.flatnonzero(labels == c)[:20] for c in (0, 1)])
    centroids = {}
    for c in (0, 1):
        groups = sorted({ids[i].split("/")[0] for i in used if labels[i] == c})
        mean = np.stack(
            [unit[[i for i in used if ids[i].split("/")[0] == g]].sum(0) for g in groups]
        )
        centroids[c] = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    reference = (unit @ centroids[1].T).max(1) - (unit @ centroids[0].T).max(1)
    np.testing.assert_allclose(_score(auditor, embedding, ids), reference, atol=1e-5)
    described = auditor.describe()
    assert described["n_train_members"] == described["n_train_nonmembers"] == 20
    assert auditor.fitted_on == {ids[i] for i in used}  # what the serve leaves out
    assert described["member_identities"] == described["nonmember_identities"] == 5
    with pytest.raises(RuntimeError, match="before fit"):
        IdentityProximityAuditor("x").score({"sample_id": ids, "embedding": torch.zeros(60, 8)})


def _margin_geometry(rng: np.random.Generator, n_member_ids: int = 12, per_id: int = 20):
    """Member identities on well-separated directions (a margin loss keeps them apart);
    every non-member identity falls near one of the learned directions, but looser."""
    directions = np.linalg.qr(rng.normal(size=(32, n_member_ids)))[0].T  # orthonormal rows
    embedding, ids, labels = [], [], []
    for k in range(n_member_ids):
        embedding.append(directions[k] + 0.1 * rng.normal(size=(per_id, 32)))
        ids += [f"m{k:02d}/{i}" for i in range(per_id)]
        labels += [1] * per_id
    for k in range(n_member_ids):
        near = directions[rng.integers(n_member_ids)]
        embedding.append(near + 0.3 * rng.normal(size=(per_id, 32)))
        ids += [f"n{k:02d}/{i}" for i in range(per_id)]
        labels += [0] * per_id
    return np.concatenate(embedding), ids, np.array(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leaks_identities_by_sample_and_inverts_on_new_identities(seed: int) -> None:
    rng = np.random.default_rng(seed)
    embedding, ids, labels = _margin_geometry(rng)
    groups = np.array([i.split("/")[0] for i in ids])

    def audit(calibration: np.ndarray) -> float:
        auditor = IdentityProximityAuditor("nearest_identity", n_train=10_000)
        cal = np.flatnonzero(calibration)
        auditor.fit(_batches(embedding[cal], [ids[i] for i in cal], labels[cal]))
        test = np.flatnonzero(~calibration)
        scores = _score(auditor, embedding[test], [ids[i] for i in test])
        return roc_auc_score(labels[test], scores)

    # by sample: three quarters of every identity's images calibrate → identity leakage
    by_sample = np.array([int(i.split("/")[1]) < 15 for i in ids])
    assert audit(by_sample) > 0.75
    # by identity: 9 of 12 identities per role calibrate; the held-out member identities lie
    # on directions the auditor only saw non-members near → below chance
    held_out = {f"m{k:02d}" for k in range(9, 12)} | {f"n{k:02d}" for k in range(9, 12)}
    by_identity = ~np.isin(groups, sorted(held_out))
    inverted = audit(by_identity)
    print(f"by identity: AUC {inverted:.3f}")
    assert inverted < 0.4
