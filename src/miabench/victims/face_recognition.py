"""Face-recognition victim: an IResNet embedding trained with a CosFace/ArcFace margin head.

The margin heads are pytorch-metric-learning's ``CosFaceLoss`` / ``ArcFaceLoss`` (they hold
the class-centre matrix ``W`` and compute the normalised-cosine logits with the margin), so
the victim only wires the backbone to the head. Auditors (MINT) read named layers through
:meth:`FaceRecognitionVictim.auditable_layers` and :meth:`select_signals`. Its utility pass
also scores an LFW-style verification benchmark when the data module carries one
(:meth:`FaceRecognitionVictim.benchmark_utility`, 10-fold LFW protocol as InsightFace).

A released InsightFace backbone (``victim.net.weights=<backbone.pth>``) is loaded as is and
audited without training (MINT's published protocol audits InsightFace's released IResNet-100);
:func:`load_insightface_backbone` refuses a file whose keys or shapes differ.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric
from tqdm.auto import tqdm

from miabench.metrics.verification import VerificationMetrics, verification_benchmark_metrics
from miabench.utils.hashing import sha256_file
from miabench.utils.weights import checkpoint_path
from miabench.victims.base import OptimizerFactory, Signals, Victim, optimizers_with_schedule
from miabench.victims.signals import LayerTap, layer_of, signal_name

#: auditable layer → backbone module: MINT's "conv layer #k" is the output of stage k.
STAGE_LAYERS = {"conv1": "layer1", "conv2": "layer2", "conv3": "layer3", "conv4": "layer4"}
#: the model outcome (the embedding) is the backbone's output itself.
EMBEDDING = "embedding"


def block_layers(backbone: nn.Module) -> dict[str, str]:
    """Auditable name → module path of the last convolution of every residual block.

    ``conv<stage>.<block>`` (e.g. ``conv2.0``) is the output of ``layer<stage>[<block>].conv2``,
    the block's last convolution (before its BN and the shortcut sum); ``conv<stage>.last`` is
    that of the stage's final block, the paper's "final convolutional layer of each of the 4
    major ResNet-100 blocks". The stage outputs ``conv1``..``conv4`` (after the shortcut sum)
    are the other reading, and this code's default.
    """
    out = {}
    for stage, module_name in enumerate(STAGE_LAYERS.values(), start=1):
        stage_module = getattr(backbone, module_name, None)
        if stage_module is None:
            continue
        for index, block in enumerate(stage_module):
            if hasattr(block, "conv2"):
                out[f"conv{stage}.{index}"] = f"{module_name}.{index}.conv2"
                out[f"conv{stage}.last"] = f"{module_name}.{index}.conv2"
    return out


class CheckpointMismatchError(ValueError):
    """A weights file whose keys or shapes are not those of the configured backbone."""


def load_insightface_backbone(
    backbone: nn.Module, weights: str | os.PathLike, config_key: str = "victim.net.weights"
) -> dict[str, Any]:
    """Load a backbone ``state_dict`` saved by InsightFace (``torch.save(backbone.state_dict())``,
    e.g. arcface_torch's ``model.pt`` / the released ``backbone.pth``) into ``backbone``.

    The key layout of :class:`~miabench.victims.nets.iresnet.IResNet` is InsightFace's
    (``conv1``, ``bn1``, ``prelu``, ``layer<k>.<i>.{bn1,conv1,bn2,prelu,conv2,bn3,downsample}``,
    ``bn2``, ``fc``, ``features``), so the file is loaded strictly: a missing or unexpected
    key, or a tensor of another shape (another depth, width or input size), is refused.

    Returns:
        ``{"weights": path, "weights_sha256": ...}``, recorded in the victim's description.

    Raises:
        FileNotFoundError: the file does not exist (names ``config_key``).
        CheckpointMismatchError: naming the file, the missing / unexpected keys and the
            tensors whose shapes differ.
    """
    path = checkpoint_path(weights, f"{config_key}: face-recognition backbone")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors alike: not a tensor state dict
        raise CheckpointMismatchError(
            f"{config_key}: {path} is not a state_dict saved with torch.save ({err})"
        ) from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a Lightning-style wrapper around the state dict
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatchError(
            f"{config_key}: {path} does not hold a state_dict (name → tensor); InsightFace "
            "saves backbone.state_dict() with torch.save"
        )
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:

        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

        problems = []
        if missing:
            problems.append(f"missing keys: {show(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {show(unexpected)}")
        if shapes:
            problems.append(f"shape mismatches: {show(shapes)}")
        hint = ""
        if any(k.startswith("module.") for k in unexpected):
            hint = " (keys start with 'module.': save backbone.module.state_dict(), as InsightFace)"
        raise CheckpointMismatchError(
            f"{config_key}: {path} does not match the configured backbone "
            f"({type(backbone).__name__}); {'; '.join(problems)}{hint}. Check the depth, "
            "widths, input size and embedding size of victim.module.backbone"
        )
    backbone.load_state_dict(state, strict=True)
    return {"weights": str(path), "weights_sha256": sha256_file(path)}


def warmup_poly_lambda(warmup_steps: int, total_steps: int, power: float = 2.0) -> Callable:
    """Factor of the base learning rate at a step: linear warm-up, then polynomial decay.

    The schedule of InsightFace's arcface_torch (``PolyScheduler``): the rate rises linearly
    from 0 over ``warmup_steps`` and then decays as ``(1 - t / T) ** power`` to 0 at
    ``total_steps``. A plain function for :class:`torch.optim.lr_scheduler.LambdaLR`
    (one multiplicative factor per step); see :func:`insightface_scheduler`.
    """
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        done = (step - warmup_steps) / (total_steps - warmup_steps)
        return max(0.0, 1.0 - done) ** power

    return factor


# -- LFW-style verification benchmark -----------------------------------------------------


@runtime_checkable
class VerificationBenchmark(Protocol):
    """Verification pairs a data module may carry as ``benchmark`` (evaluation only).

    :class:`miabench.data.lfw_pairs.VerificationPairs` is one; the victim depends on this
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


class FaceRecognitionVictim(Victim):
    """IResNet backbone + margin-softmax head (CosFace by default), trained on members.

    Args:
        backbone: image in [-1, 1] → embedding (e.g. :func:`~miabench.victims.nets.iresnet.iresnet`).
        head: margin loss with class centres, called ``head(embeddings, labels)`` (e.g.
            ``pytorch_metric_learning.losses.CosFaceLoss(num_classes, embedding_size,
            margin=0.4, scale=64)``).
        optimizer: partial optimiser over backbone and head parameters (InsightFace: SGD 0.1,
            momentum 0.9, weight decay 5e-4).
        scheduler: optional partial LR scheduler, stepped per epoch, or ``insightface``:
            arcface_torch's linear warm-up then polynomial decay (power 2), stepped per
            optimiser step (``warmup_epochs`` of the ``trainer.max_epochs``).
        warmup_epochs: warm-up length of the ``insightface`` schedule (arcface_torch: 0 for
            its Glint360k configs, 2 for some others; fractions allowed).
        weights: a released InsightFace backbone ``state_dict`` to audit as is
            (:func:`load_insightface_backbone`); the victim then refuses to train (run it
            with ``trainer.max_epochs=0``) and ``head`` may be None.
        backbone_grad_clip: clip the backbone's gradient to this total norm before every
            step, as arcface_torch's training loop does (5, the head's gradient unclipped);
            None does not clip. Without it, the recipe's first SGD steps at lr 0.1 can
            diverge in a deep IResNet (gradient norms of thousands).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module | None,
        optimizer: OptimizerFactory,
        scheduler: Callable[..., Any] | str | None = None,
        warmup_epochs: float = 0.0,
        weights: str | os.PathLike | None = None,
        backbone_grad_clip: float | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone_grad_clip = backbone_grad_clip
        self.head = head
        self._optimizer = optimizer
        self._scheduler = scheduler
        self.warmup_epochs = warmup_epochs
        self._selected: tuple[str, ...] = ()
        self._fingerprint: str | None = None
        self._weights_info: dict[str, Any] = {}
        if weights is not None and str(weights).lower() not in ("", "none"):
            self.use_released_backbone(weights)
        elif head is None:
            raise ValueError(
                "victim.module.head is null: only a released backbone (victim.net.weights) can "
                "go without a margin head, since training needs one"
            )
        self._blocks = block_layers(backbone)
        self.save_hyperparameters(
            ignore=["backbone", "head", "optimizer", "scheduler"], logger=False
        )

    def use_released_backbone(
        self, weights: str | os.PathLike, config_key: str = "victim.net.weights"
    ) -> dict[str, Any]:
        """Load a released InsightFace backbone into :attr:`backbone`, audited as is.

        Used by ``victim.net.weights`` and by ``victim.checkpoint``
        (:func:`miabench.checkpoints.insightface.read`). The victim then refuses to train.

        Returns:
            ``{"weights": path, "weights_sha256": ...}``.

        Raises:
            FileNotFoundError, CheckpointMismatchError: see :func:`load_insightface_backbone`.
        """
        self._weights_info = load_insightface_backbone(self.backbone, weights, config_key)
        self._fingerprint = None
        return self._weights_info

    # -- auditing contract --------------------------------------------------------------
    @property
    def released(self) -> bool:
        """Whether the backbone is a released checkpoint audited as is (no training)."""
        return bool(self._weights_info)

    def auditable_layers(self) -> tuple[str, ...]:
        """Layers an auditor may ask for: ``conv1``..``conv4`` (stage outputs), the last
        convolution of every block (``conv<stage>.<block>``) and ``embedding``."""
        return (*STAGE_LAYERS, *self._blocks, EMBEDDING)

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

    def on_train_epoch_start(self) -> None:
        if self.released:
            raise RuntimeError(
                f"victim.net.weights={self._weights_info['weights']} is a released model, "
                "audited as is: set trainer.max_epochs=0 (fine-tuning it would change what "
                "is audited)"
            )

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

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """arcface_torch's clipping of the backbone's gradient norm, then the trainer's own."""
        if self.backbone_grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), self.backbone_grad_clip)
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> Any:
        optimizer = self._optimizer(params=[p for p in self.parameters() if p.requires_grad])
        if self._scheduler == "insightface":
            return {"optimizer": optimizer, "lr_scheduler": self._insightface_schedule(optimizer)}
        return optimizers_with_schedule(optimizer, self._scheduler)

    def _insightface_schedule(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """arcface_torch's warm-up + polynomial decay over the whole run, stepped per step."""
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = total / max(1, self.trainer.max_epochs or 1)
        warmup = math.ceil(self.warmup_epochs * steps_per_epoch)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_poly_lambda(warmup, max(total, warmup + 1))
        )
        return {"scheduler": schedule, "interval": "step", "frequency": 1}

    def signal_step(self, batch: dict[str, Any]) -> Signals:
        modules = {
            layer: self.backbone.get_submodule(
                STAGE_LAYERS[layer] if layer in STAGE_LAYERS else self._blocks[layer]
            )
            for layer in self._selected
            if layer != EMBEDDING
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
        """Per sample: whether the head recognises a member's identity (NaN for others, and
        for every sample of a released backbone, which has no head for these classes)."""
        target = signals["target"]
        if self.head is None:
            return {"identification": torch.full(target.shape, torch.nan)}
        logits = F.normalize(signals["embedding"], dim=1) @ F.normalize(self.head.W, dim=0)
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
        if self.head is None:
            head = {"head": None}
        else:
            head = {
                "head": type(self.head).__qualname__,
                "num_classes": int(self.head.W.shape[1]),
                "embedding_size": int(self.head.W.shape[0]),
            }
        return {**head, **self._weights_info, "fingerprint": self.fingerprint()}
