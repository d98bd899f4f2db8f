"""MINT auditors (DeAlcala et al., Membership Inference Test): a small model trained on a
victim's activations to tell training data from unseen data.

- ``arch: mlp`` ("Vanilla MINT model"): input = per-channel maximum of each activation map
  (the embedding as is), concatenated over the requested layers; one hidden layer of 64,
  dropout 0.3, L1 weight penalty 0.1 (Keras ``kernel_regularizer=l1(0.1)`` semantics:
  ``0.1 * sum |W|`` added to the loss), sigmoid output.
- ``arch: cnn``: two 3x3 conv layers (64, 128 filters; ReLU, 2x2 max-pool) on one full
  activation map, then two fully connected layers (flattened conv output → ``hidden`` → 1).
  The paper sizes the first FC layer "to the convolution output"; a square FC layer at that
  size has 630M weights for IResNet's conv1 maps, so ``hidden`` sets it (64 by default).

Both start with a parameter-free standardisation of their input (BatchNorm without affine
parameters, i.e. training-set statistics at test time): the paper does not say how inputs
are scaled, and raw maxima range over orders of magnitude across layers.

The auditor is fitted on the first ``n_train`` calibration samples, balanced between members
and non-members (the table's "number of training samples"; the pipeline streams the
calibration half in a seeded random order, so they span its identities), extracted once into an on-disk
chunked store (:class:`~miabench.attacks.activations.ActivationStore`) and streamed for
``epochs`` passes. Its score is the sigmoid output; ``decision_threshold`` (0.5) is its own
decision, from which the pipeline reports MINT's accuracy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from miabench.attacks.activations import ActivationStore
from miabench.attacks.base import Attack
from miabench.victims.base import Signals
from miabench.victims.signals import signal_name

log = logging.getLogger(__name__)

ARCHS = ("mlp", "cnn")


def channel_max(activation: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, C) per-channel maximum; (B, D) vectors pass through."""
    return activation.amax(dim=(2, 3)) if activation.ndim == 4 else activation


class BalancedDraw:
    """The first ``n_train`` samples of a calibration stream, half members, half non-members.

    Every auditor trained on "N samples" draws them this way, so all cells of a table with
    the same N saw the same samples.
    """

    def __init__(self, n_train: int) -> None:
        self.quota = {0: n_train // 2, 1: n_train - n_train // 2}
        self.taken = {0: 0, 1: 0}

    def keep(self, labels: torch.Tensor) -> torch.Tensor:
        """(B,) bool mask (on the CPU) of this batch's rows still within their class's quota."""
        labels = labels.long().cpu()
        keep = torch.zeros(len(labels), dtype=torch.bool)
        for cls in (0, 1):
            rows = torch.nonzero(labels == cls).flatten()[: self.quota[cls] - self.taken[cls]]
            keep[rows] = True
            self.taken[cls] += len(rows)
        return keep

    @property
    def full(self) -> bool:
        """Both quotas are met (the stream can stop)."""
        return self.taken == self.quota

    def check(self, name: str) -> None:
        """Raise when the stream gave no member or no non-member.

        Raises:
            ValueError: naming the attack.
        """
        if min(self.taken.values()) == 0:
            raise ValueError(f"attack.{name}: the calibration half lacks members or non-members")

    def report(self) -> dict[str, int]:
        return {"n_train_members": self.taken[1], "n_train_nonmembers": self.taken[0]}


class MintMLP(nn.Module):
    """Vanilla MINT model: standardise → Linear(d, hidden) → ReLU → Dropout → Linear(hidden, 1).

    ``as_written``: the paper's wording, "three fully connected layers—input-size neurons
    ..., 64 neurons, and 1 neuron" with dropout between layers: Linear(d, d) → ReLU →
    Dropout → Linear(d, 64) → ReLU → Dropout → Linear(64, 1). ``standardize=False`` drops the
    parameter-free input standardisation (the paper does not mention one).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int = 64,
        dropout: float = 0.3,
        standardize: bool = True,
        as_written: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if standardize:
            layers.append(nn.BatchNorm1d(in_features, affine=False))
        if as_written:
            layers += [nn.Linear(in_features, in_features), nn.ReLU(), nn.Dropout(dropout)]
        layers += [nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class MintCNN(nn.Module):
    """CNN MINT model: standardise → 2 x (Conv3x3 → ReLU → MaxPool2) → FC → ReLU → FC."""

    def __init__(
        self,
        in_channels: int,
        spatial: tuple[int, int],
        channels: Sequence[int] = (64, 128),
        hidden: int = 64,
        dropout: float = 0.3,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels, affine=False)] if standardize else []
        c, (h, w) = in_channels, spatial
        for width in channels:
            # ceil_mode keeps 1x1 maps (e.g. a small victim's last stage) at 1x1
            layers += [
                nn.Conv2d(c, width, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            c, h, w = width, math.ceil(h / 2), math.ceil(w / 2)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)).squeeze(1)


class MintAuditor(Attack):
    """MINT: learn membership from named-layer activations of the audited model.

    Args:
        name: attack name (config key).
        layers: auditable layers of the victim (``conv1``..``conv4``, ``embedding``); several
            layers are concatenated (MLP only: "all conv layers").
        arch: ``mlp`` or ``cnn``.
        n_train: MINT training samples N, taken from the calibration half, N/2 members and
            N/2 non-members (fewer when the calibration half is smaller; recorded).
        epochs: passes over the N samples.
        batch_size: auditor minibatch.
        lr: Adam learning rate.
        l1: L1 penalty on the auditor's weights (paper: 0.1).
        hidden: width of the hidden fully connected layer.
        dropout: dropout before the last layer (paper: 0.3).
        conv_channels: CNN filters (paper: 64, 128).
        standardize: start with a parameter-free standardisation of the input (default; the
            paper does not say how inputs are scaled). False: raw activations, as written.
        mlp_as_written: the MLP with the paper's three fully connected layers (input-size,
            64, 1) instead of the default (64, 1) after the input.
        cache_dir: where extracted activations are stored (chunks, keyed).
        chunk_rows: rows per stored chunk.
        seed: seed of the auditor's initialisation and minibatch order.
    """

    trainable = True
    #: the auditor's own decision: member when its sigmoid output is at least this.
    decision_threshold = 0.5

    def __init__(
        self,
        name: str,
        layers: Sequence[str],
        arch: str = "mlp",
        n_train: int = 1000,
        epochs: int = 20,
        batch_size: int = 64,
        lr: float = 1e-3,
        l1: float = 0.1,
        hidden: int = 64,
        dropout: float = 0.3,
        conv_channels: Sequence[int] = (64, 128),
        standardize: bool = True,
        mlp_as_written: bool = False,
        cache_dir: str | Path = "outputs/cache/activations",
        chunk_rows: int = 4096,
        seed: int = 0,
    ) -> None:
        super().__init__(name)
        if arch not in ARCHS:
            raise ValueError(f"attack.{name}.arch must be one of {ARCHS}, got {arch!r}")
        layers = list(layers)
        if not layers:
            raise ValueError(f"attack.{name}.layers is empty")
        if arch == "cnn" and len(layers) != 1:
            raise ValueError(
                f"attack.{name}: the CNN auditor reads one activation map (maps of different "
                f"layers have different sizes and cannot be stacked), got layers {layers}"
            )
        if n_train < 2:
            raise ValueError(f"attack.{name}.n_train must be >= 2, got {n_train}")
        self.layers = layers
        self.arch = arch
        self.n_train = n_train
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.l1 = l1
        self.hidden = hidden
        self.dropout = dropout
        self.conv_channels = tuple(conv_channels)
        self.standardize = bool(standardize)
        self.mlp_as_written = bool(mlp_as_written)
        if self.mlp_as_written and arch != "mlp":
            raise ValueError(f"attack.{name}.mlp_as_written applies to arch 'mlp', not {arch!r}")
        self.cache_dir = Path(cache_dir)
        self.chunk_rows = chunk_rows
        self.seed = seed
        self.requires = (
            "sample_id",
            "victim_fingerprint",
            *(signal_name(layer) for layer in layers),
        )
        self.model: nn.Module | None = None
        self.report: dict[str, Any] = {}

    # -- features -----------------------------------------------------------------------
    def features(self, signals: Signals) -> torch.Tensor:
        """The auditor's input for a batch: channel maxima (MLP) or the full map (CNN)."""
        maps = [signals[signal_name(layer)].float() for layer in self.layers]
        if self.arch == "cnn":
            if maps[0].ndim != 4:
                raise ValueError(
                    f"attack.{self.name}: the CNN auditor needs an activation map, but layer "
                    f"{self.layers[0]!r} is a vector of shape {tuple(maps[0].shape[1:])}"
                )
            return maps[0]
        return torch.cat([channel_max(m).flatten(1) for m in maps], dim=1)

    def _spec(self) -> dict[str, Any]:
        return {"layers": self.layers, "reduction": "channel_max" if self.arch == "mlp" else "none"}

    def _extract(self, batches: Callable[[], Iterator[tuple[Signals, torch.Tensor]]]) -> Path:
        """Stream the calibration signals once, keep N balanced samples in a chunk store."""
        draw = BalancedDraw(self.n_train)
        store = ActivationStore(self.cache_dir, chunk_rows=self.chunk_rows)
        fingerprint = None
        fitted: list[str] = []
        try:
            for signals, labels in batches():
                fingerprint = signals["victim_fingerprint"]
                keep = draw.keep(labels)
                if keep.any():
                    x = self.features(signals)[keep.to(signals[signal_name(self.layers[0])].device)]
                    ids = [s for s, k in zip(signals["sample_id"], keep.tolist(), strict=True) if k]
                    store.append(x, labels.cpu()[keep].float(), ids)
                    fitted += ids
                if draw.full:
                    break  # stops the victim's signal stream early
            draw.check(self.name)
        except BaseException:
            store.abort()
            raise
        if not draw.full:
            log.warning(
                "%s: asked for n_train=%d, the calibration half gave %d members + %d non-members",
                self.name,
                self.n_train,
                draw.taken[1],
                draw.taken[0],
            )
        self.report = draw.report()
        self.fitted_on = frozenset(fitted)
        return store.finish(str(fingerprint), self._spec())

    # -- training -----------------------------------------------------------------------
    def _build(self, example: torch.Tensor) -> nn.Module:
        if self.arch == "mlp":
            return MintMLP(
                example.shape[1],
                self.hidden,
                self.dropout,
                standardize=self.standardize,
                as_written=self.mlp_as_written,
            )
        return MintCNN(
            example.shape[1],
            tuple(example.shape[2:]),
            self.conv_channels,
            self.hidden,
            self.dropout,
            standardize=self.standardize,
        )

    def _penalty(self, model: nn.Module) -> torch.Tensor:
        weights = [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        return self.l1 * sum(w.abs().sum() for w in weights)

    def fit(self, batches: Callable[[], Iterator[tuple[Signals, torch.Tensor]]]) -> None:
        """Extract N balanced calibration samples to disk, then train the auditor on them."""
        directory = self._extract(batches)
        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        first, _ = next(ActivationStore.chunks(directory))
        model = self._build(first[:2]).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        model.train()
        losses: list[float] = []
        for _ in range(self.epochs):
            total, count = 0.0, 0
            for x, y in ActivationStore.chunks(directory, generator):
                order = torch.randperm(len(y), generator=generator)
                for start in range(0, len(y), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    if len(rows) < 2:
                        continue  # BatchNorm needs two rows in training mode
                    xb, yb = x[rows].to(self.device), y[rows].to(self.device)
                    loss = F.binary_cross_entropy_with_logits(model(xb), yb)
                    optimizer.zero_grad(set_to_none=True)
                    (loss + self._penalty(model)).backward()
                    optimizer.step()
                    total += loss.item() * len(rows)
                    count += len(rows)
            losses.append(total / max(count, 1))
        model.eval()
        self.model = model
        self.report.update(
            activation_store=str(directory), final_train_bce=losses[-1] if losses else None
        )

    @torch.no_grad()
    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        if self.model is None:
            raise RuntimeError(f"attack.{self.name}: score() before fit()")
        probability = torch.sigmoid(self.model(self.features(signals).to(self.device)))
        return {"score": probability, "decision": (probability >= self.decision_threshold).float()}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "layers": self.layers,
            "arch": self.arch,
            "n_train": self.n_train,
            "epochs": self.epochs,
            "l1": self.l1,
            "standardize": self.standardize,
            "mlp_as_written": self.mlp_as_written,
            "decision_threshold": self.decision_threshold,
            **self.report,
        }
