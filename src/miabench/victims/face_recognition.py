"""Face-recognition victim: an IResNet embedding trained with a CosFace/ArcFace margin head.

The margin heads are pytorch-metric-learning's ``CosFaceLoss`` / ``ArcFaceLoss`` (they hold
the class-centre matrix ``W`` and compute the normalised-cosine logits with the margin), so
the victim only wires the backbone to the head. Auditors (MINT) read named layers through
:meth:`FaceRecognitionVictim.auditable_layers` and :meth:`select_signals`. Its utility pass
also scores an LFW-style verification benchmark when the data module carries one
(:meth:`FaceRecognitionVictim.benchmark_utility`, 10-fold LFW protocol as InsightFace).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import KFold
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_roc
from tqdm.auto import tqdm

from miabench.attacks.activations import LayerTap, layer_of, signal_name
from miabench.victims.base import Signals, Victim

OptimizerFactory = Callable[..., torch.optim.Optimizer]

#: auditable layer → backbone module: MINT's "conv layer #k" is the output of stage k.
STAGE_LAYERS = {"conv1": "layer1", "conv2": "layer2", "conv3": "layer3", "conv4": "layer4"}
#: the model outcome (the embedding) is the backbone's output itself.
EMBEDDING = "embedding"


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


# -- LFW-style verification benchmark -----------------------------------------------------


@runtime_checkable
class VerificationBenchmark(Protocol):
    """Verification pairs a data module may carry as ``benchmark`` (evaluation only).

    :class:`miabench.data.faces.VerificationPairs` is one; the victim depends on this
    protocol only, so the data code does not shape the victim's cache key.
    """

    name: str
    flip: bool
    folds: int

    def dataset(self) -> Dataset:
        """Items ``{"first", "second": image [C, S, S] in [0, 1], "same": bool}``."""
        ...

    def describe(self) -> dict[str, Any]:
        """Provenance recorded beside the metrics."""
        ...


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


class FaceRecognitionVictim(Victim):
    """IResNet backbone + margin-softmax head (CosFace by default), trained on members.

    Args:
        backbone: image in [-1, 1] → embedding (e.g. :func:`~miabench.victims.nets.iresnet.iresnet`).
        head: margin loss with class centres, called ``head(embeddings, labels)`` (e.g.
            ``pytorch_metric_learning.losses.CosFaceLoss(num_classes, embedding_size,
            margin=0.4, scale=64)``).
        optimizer: partial optimiser over backbone and head parameters (InsightFace: SGD 0.1,
            momentum 0.9, weight decay 5e-4).
        scheduler: optional partial LR scheduler, stepped per epoch.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self._optimizer = optimizer
        self._scheduler = scheduler
        self._selected: tuple[str, ...] = ()
        self._fingerprint: str | None = None
        self.save_hyperparameters(
            ignore=["backbone", "head", "optimizer", "scheduler"], logger=False
        )

    # -- auditing contract --------------------------------------------------------------
    def auditable_layers(self) -> tuple[str, ...]:
        """Layers an auditor may ask for: ``conv1``..``conv4`` (stage outputs), ``embedding``."""
        return (*STAGE_LAYERS, EMBEDDING)

    @property
    def provides(self) -> tuple[str, ...]:  # type: ignore[override]
        return (
            "sample_id",
            "input",
            "target",
            "identity",
            "embedding",
            "victim_fingerprint",
            *(signal_name(layer) for layer in self.auditable_layers()),
        )

    def select_signals(self, names: Iterable[str]) -> None:
        """Compute the ``activation.<layer>`` signals among ``names`` in later signal steps.

        Called by the attack stage with an attack's ``requires`` before it streams signals;
        activations not asked for are not kept (a conv1 map of IResNet-100 at 112x112 is
        800 KB per sample).

        Raises:
            ValueError: naming an unknown layer.
        """
        asked = (layer_of(n) for n in names)
        layers = tuple(dict.fromkeys(layer for layer in asked if layer is not None))
        unknown = [layer for layer in layers if layer not in self.auditable_layers()]
        if unknown:
            raise ValueError(
                f"unknown auditable layer(s) {unknown}; this victim has {list(self.auditable_layers())}"
            )
        self._selected = layers

    def fingerprint(self) -> str:
        """Hash of the current weights (keys auditors' activation caches); cached."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name, tensor in sorted(self.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._fingerprint = None
        return super().load_state_dict(*args, **kwargs)

    # -- model --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of images in [0, 1] (normalised to [-1, 1] as InsightFace does)."""
        return self.backbone(x * 2.0 - 1.0)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self._fingerprint = None
        labels = batch["target"]
        if (labels < 0).any():
            raise ValueError("a training batch holds samples of non-member identities (label -1)")
        embeddings = self(batch["input"])
        loss = self.head(embeddings, labels)
        with torch.no_grad():
            # the head's logits without margin: how well members are recognised
            logits = F.normalize(embeddings, dim=1) @ F.normalize(self.head.W, dim=0)
            accuracy = (logits.argmax(1) == labels).float().mean()
        self.log_dict(
            {"train/loss": loss, "train/accuracy": accuracy},
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=len(labels),
        )
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = self._optimizer(params=self.parameters())
        if self._scheduler is None:
            return optimizer
        return [optimizer], [self._scheduler(optimizer=optimizer)]

    def signal_step(self, batch: dict[str, Any]) -> Signals:
        modules = {
            layer: getattr(self.backbone, STAGE_LAYERS[layer])
            for layer in self._selected
            if layer in STAGE_LAYERS
        }
        with LayerTap(modules) as tap:
            embedding = self(batch["input"])
        signals: Signals = {
            "sample_id": list(batch["sample_id"]),
            "input": batch["input"],
            "target": batch["target"],
            "identity": batch["identity"],
            "embedding": embedding,
            "victim_fingerprint": self.fingerprint(),
        }
        for layer in self._selected:
            signals[signal_name(layer)] = embedding if layer == EMBEDDING else tap.outputs[layer]
        return signals

    # -- utility ------------------------------------------------------------------------
    def utility(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Per sample: whether the head recognises a member's identity (NaN for others)."""
        logits = F.normalize(signals["embedding"], dim=1) @ F.normalize(self.head.W, dim=0)
        target = signals["target"]
        correct = (logits.argmax(1) == target).float()
        return {"identification": torch.where(target >= 0, correct, torch.nan)}

    def utility_metrics(self) -> dict[str, Metric]:
        return {"verification": VerificationMetrics()}

    def update_utility_metrics(self, metrics: dict[str, Metric], signals: Signals) -> None:
        metrics["verification"].update(signals["embedding"], signals["identity"])

    # -- verification benchmark (evaluation only) ----------------------------------------
    def verification_embedding(self, images: torch.Tensor, flip: bool = True) -> torch.Tensor:
        """Embedding for verification; with ``flip``, plus that of the mirrored image
        (InsightFace adds the two before normalising)."""
        embedding = self(images)
        if flip:
            embedding = embedding + self(images.flip(-1))
        return embedding

    @torch.no_grad()
    def pair_scores(
        self, loader: DataLoader, device: torch.device | str | None = None, flip: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine similarity and same-identity label of every pair ``loader`` yields."""
        was_training = self.training
        self.eval()
        if device is not None:
            self.to(device)
        scores, labels = [], []
        try:
            for batch in tqdm(loader, desc="verification pairs", leave=False):
                both = torch.cat([batch["first"], batch["second"]]).to(self.device)
                embeddings = F.normalize(self.verification_embedding(both, flip).float(), dim=1)
                first, second = embeddings.chunk(2)
                scores.append((first * second).sum(1).cpu())
                labels.append(batch["same"].bool().cpu())
        finally:
            self.train(was_training)
        return torch.cat(scores), torch.cat(labels)

    def benchmark_utility(self, datamodule: Any, device: torch.device | str) -> dict[str, Any]:
        """LFW-protocol verification on the data module's ``benchmark`` pairs, if it has any.

        Returns ``{<benchmark name>: {accuracy, accuracy_std, fold_accuracies,
        tar_at_far_*, n_pairs, n_same, n_folds, pairs, images, flip}}``, or ``{}`` when the
        data module carries no :class:`VerificationBenchmark`. Called once per utility
        pass by the attack stage (see ``pipeline.attack._utility``).
        """
        benchmark = getattr(datamodule, "benchmark", None)
        if not isinstance(benchmark, VerificationBenchmark):
            return {}
        loader = DataLoader(
            benchmark.dataset(),
            batch_size=getattr(datamodule, "eval_batch_size", 64),
            shuffle=False,
            num_workers=getattr(datamodule, "num_workers", 0),
        )
        scores, same = self.pair_scores(loader, device, flip=benchmark.flip)
        metrics = verification_benchmark_metrics(scores, same, folds=benchmark.folds)
        return {benchmark.name: {**metrics, **benchmark.describe()}}

    def describe(self) -> dict[str, Any]:
        return {
            "head": type(self.head).__qualname__,
            "num_classes": int(self.head.W.shape[1]),
            "embedding_size": int(self.head.W.shape[0]),
            "fingerprint": self.fingerprint(),
        }
