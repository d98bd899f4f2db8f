"""Face-verification metrics: accuracy and TAR@FAR over pairs of embeddings.

:class:`VerificationMetrics` scores every pair of a role's samples (the face victim's
dataset-level utility); :func:`verification_benchmark_metrics` follows the LFW protocol
(10 folds, threshold chosen on the other folds) as InsightFace reports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import KFold
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_roc


class VerificationMetrics(Metric):
    """Face verification over all pairs of a role's samples: accuracy and TAR@FAR.

    Embeddings and identities are accumulated; :meth:`compute` scores every pair by cosine
    similarity (up to ``max_samples`` samples, the first ones, to bound the n² pairs),
    genuine = same identity. ``accuracy`` is the best-threshold accuracy on a balanced set of
    pairs (as many impostor pairs as genuine ones, seeded), ``tar_at_far_*`` come from
    torchmetrics' ROC over all pairs. NaN when a role has no genuine pair.
    """

    full_state_update = False

    def __init__(self, fars: Iterable[float] = (1e-3, 1e-2), max_samples: int = 2000) -> None:
        super().__init__()
        self.fars = tuple(fars)
        self.max_samples = max_samples
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("identities", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: torch.Tensor, identities: torch.Tensor) -> None:  # type: ignore[override]
        self.embeddings.append(F.normalize(embeddings.detach().float(), dim=1))
        self.identities.append(identities.detach().long())

    def compute(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        nan = torch.tensor(float("nan"))
        if not self.embeddings:
            return {"verification_accuracy": nan}
        e = torch.cat(self.embeddings)[: self.max_samples]
        ids = torch.cat(self.identities)[: self.max_samples]
        rows, cols = torch.triu_indices(len(ids), len(ids), offset=1, device=e.device)
        similarity = (e[rows] * e[cols]).sum(1)
        genuine = ids[rows] == ids[cols]
        out: dict[str, torch.Tensor] = {}
        if not genuine.any() or genuine.all():
            return {"verification_accuracy": nan}
        fpr, tpr, _ = binary_roc(similarity, genuine.long())
        for far in self.fars:
            ok = fpr <= far
            out[f"tar_at_far_{far:g}"] = tpr[ok].max() if ok.any() else nan
        # balanced pairs: every genuine pair + as many random impostor pairs
        g = similarity[genuine]
        impostors = similarity[~genuine]
        pick = torch.randperm(len(impostors), generator=torch.Generator().manual_seed(0))
        i = impostors[pick[: len(g)].to(impostors.device)]
        scores = torch.cat([g, i])
        labels = torch.cat([torch.ones_like(g), torch.zeros_like(i)])
        # accuracy of "genuine if similarity >= t" for every t, via a sort and cumulative sums
        ranked = labels[torch.argsort(scores, descending=True)]
        true_accepts = torch.cumsum(ranked, 0)
        false_accepts = torch.cumsum(1 - ranked, 0)
        correct = true_accepts + (len(i) - false_accepts)
        out["verification_accuracy"] = torch.cat(
            [correct, correct.new_tensor([len(i)])]
        ).max() / len(scores)
        return out


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold ``t`` of "same identity if score >= t" most accurate on these pairs.

    Candidates are every observed score and ``+inf`` (reject all); InsightFace searches a
    0.01 grid of squared distances (``2 - 2 cos``) instead, which can only land within that
    grid step of the exact best threshold found here. Among equally accurate thresholds the
    highest (strictest) wins, as InsightFace's ``argmax`` over increasing distance
    thresholds picks the smallest distance.
    """
    order = np.argsort(-scores, kind="stable")
    ranked, genuine = scores[order], same[order].astype(bool)
    true_accepts, false_accepts = np.cumsum(genuine), np.cumsum(~genuine)
    n_impostors = int((~genuine).sum())
    # accepting the k best-scored pairs is a threshold only where the next score is lower
    cut = np.append(ranked[1:] != ranked[:-1], True)
    correct = np.concatenate([[n_impostors], (true_accepts + n_impostors - false_accepts)[cut]])
    thresholds = np.concatenate([[np.inf], ranked[cut]])
    return float(thresholds[np.argmax(correct)])


def fold_accuracies(scores: np.ndarray, same: np.ndarray, folds: int) -> np.ndarray:
    """LFW protocol accuracy per fold: threshold chosen on the other folds, scored on this one.

    Folds are contiguous (scikit-learn's unshuffled ``KFold``), as LFW's ``pairs.txt`` lists
    them fold after fold and InsightFace splits them. One fold: threshold and accuracy on all
    pairs (InsightFace's ``LFold``). Written by hand because neither scikit-learn nor
    torchmetrics picks a decision threshold on some folds and scores it on another; the
    threshold search itself is a sort and two cumulative sums (:func:`best_threshold`).
    """
    scores, same = np.asarray(scores, dtype=np.float64), np.asarray(same, dtype=bool)
    everything = np.arange(len(scores))
    splits = KFold(n_splits=folds).split(everything) if folds > 1 else [(everything, everything)]
    accuracies = []
    for train, test in splits:
        threshold = best_threshold(scores[train], same[train])
        accuracies.append(np.mean((scores[test] >= threshold) == same[test]))
    return np.asarray(accuracies)


def verification_benchmark_metrics(
    scores: torch.Tensor | np.ndarray,
    same: torch.Tensor | np.ndarray,
    folds: int = 10,
    fars: Iterable[float] = (1e-3, 1e-2),
) -> dict[str, Any]:
    """LFW-protocol metrics of pair cosine similarities.

    ``accuracy`` / ``accuracy_std``: mean and (population) standard deviation over folds of
    :func:`fold_accuracies`, as InsightFace reports "Accuracy-Flip: mean+-std".
    ``tar_at_far_<far>``: the highest true-accept rate at a false-accept rate <= far, from
    torchmetrics' ROC over all pairs (NaN when no threshold reaches it).
    """
    s = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(same)).bool()
    if not y.any() or y.all():
        raise ValueError("verification pairs need both same- and different-identity pairs")
    accuracies = fold_accuracies(s.numpy(), y.numpy(), folds)
    # cosine in [-1, 1] → [0, 1]: torchmetrics treats scores outside [0, 1] as logits
    fpr, tpr, _ = binary_roc(((s + 1) / 2).clamp(0, 1), y.long())
    out: dict[str, Any] = {
        "accuracy": float(accuracies.mean()),
        "accuracy_std": float(accuracies.std()),
        "fold_accuracies": accuracies.tolist(),
    }
    for far in fars:
        ok = fpr <= far
        out[f"tar_at_far_{far:g}"] = float(tpr[ok].max()) if ok.any() else float("nan")
    out.update(n_pairs=len(y), n_same=int(y.sum()), n_folds=len(accuracies))
    return out
