"""The contract between victims and attacks.

A victim is a LightningModule that, besides training, turns a batch into per-sample
*signals*: tensors an attacker could observe or compute from a query (the model output,
the query input and its ground truth, per-sample losses). Attacks only ever see these
signals (and, for activation auditors, named layers to hook); they never reach into a
victim's internals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypedDict

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader
from torchmetrics import Metric
from tqdm.auto import tqdm


class Signals(TypedDict, total=False):
    """What a victim yields per batch, batch-first; a victim fills the keys it ``provides``.

    Every bundle carries ``sample_id``. Image signals are float tensors (B, C, H, W) in
    [0, 1]. Attacker views (``defense.attacker_view``) return the same bundle with some
    entries coarsened; reference signal functions read it and return per-sample arrays.

    Attributes:
        sample_id: one id per sample (the manifest's).
        input: the query (image, or label map for label-to-photo victims).
        target: its ground truth: image (B, C, H, W), label map (B, H, W), class or
            identity index (B,).
        output: the victim's answer: image, class probabilities (B, K, H, W) or (B, K).
        loss: per-sample training loss (B,) where the victim computes one (detectors).
        loss_terms: the named parts of ``loss``, each (B,).
        boxes: per image, its ground-truth boxes (n, 4) in xyxy pixels.
        ignore: per image, which of ``boxes`` are not trained on (crowd / invalid).
        detections: per image, ``{"boxes": (n, 4), "scores": (n,), ...}`` after
            post-processing.
        identity: identity index of each face (face recognition).
        embedding: the face embedding (B, D).
        victim_fingerprint: hash of the weights that produced the bundle.
    """

    sample_id: list[str]
    input: torch.Tensor
    target: torch.Tensor
    output: torch.Tensor
    loss: torch.Tensor
    loss_terms: dict[str, torch.Tensor]
    boxes: list[torch.Tensor]
    ignore: list[torch.Tensor]
    detections: list[dict[str, torch.Tensor]]
    identity: torch.Tensor
    embedding: torch.Tensor
    victim_fingerprint: str


#: Signal under which :meth:`Victim.iter_signals` passes the victim itself as a black box:
#: a function ``images (B, C, H, W) -> answer signals`` (:meth:`Victim.query`), for attacks
#: that send queries of their own (label-only attacks query augmented copies). The attack
#: stage passes its answers through the defense's ``attacker_view``. Every victim answers
#: queries, so it is not listed in ``provides``.
QUERY = "query"

#: What a victim config's ``optimizer`` (``_partial_: true``) instantiates to: a callable
#: taking the parameters (and keyword overrides) and returning the optimizer.
OptimizerFactory = Callable[..., torch.optim.Optimizer]
#: What a config's ``scheduler`` (``_partial_: true``) instantiates to: called with
#: ``optimizer=``, it returns a learning-rate scheduler.
SchedulerFactory = Callable[..., Any]


def optimizers_with_schedule(
    optimizer: torch.optim.Optimizer,
    scheduler: SchedulerFactory | None = None,
    interval: str = "epoch",
) -> Any:
    """What ``configure_optimizers`` returns for one optimizer and an optional scheduler.

    Args:
        optimizer: the victim's optimizer, already built on its parameters.
        scheduler: a scheduler factory (``_partial_: true`` in the config) called with
            ``optimizer=``; None trains at a constant rate.
        interval: when Lightning steps the scheduler, ``epoch`` or ``step``.
    """
    if scheduler is None:
        return optimizer
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler(optimizer=optimizer), "interval": interval},
    }


class Victim(pl.LightningModule):
    """Base class of every victim model.

    Subclasses name their signals in :attr:`provides` and override :meth:`signal_step`
    unless ``forward(input)`` is their whole answer; :meth:`iter_signals` runs it over a
    dataloader in eval mode without gradients.
    """

    #: names of the signals :meth:`signal_step` returns, checked against attacks' needs.
    provides: tuple[str, ...] = ("sample_id",)

    def signal_step(self, batch: dict[str, Any]) -> Signals:
        """Compute per-sample signals for one batch (already on the victim's device).

        The default serves every victim whose ``forward`` maps the query to its answer
        (image translation, segmentation): ``input`` and ``target`` as the batch holds them,
        ``output = self(input)``. Victims with other answers (boxes, embeddings, class
        probabilities) or extra signals override it, and every victim lists what it returns
        in :attr:`provides`.
        """
        return {
            "sample_id": list(batch["sample_id"]),
            "input": batch["input"],
            "target": batch["target"],
            "output": self(batch["input"]),
        }

    def query(self, images: torch.Tensor) -> Signals:
        """The victim's answer to arbitrary images, as a deployment returns it.

        The answer signals of :meth:`signal_step` without the ground truth (there is none
        for an attacker's own query): ``output`` by default; victims whose answer is not
        ``forward(input)`` (a detector's ``detections``) override it. Called in eval mode
        without gradients (through the ``query`` signal of :meth:`iter_signals`).

        Args:
            images: (B, C, H, W) images in [0, 1] on the victim's device.
        """
        return {"output": self(images)}

    def _black_box(self, images: torch.Tensor) -> Signals:
        # the attack calls this between two batches of iter_signals, outside its no_grad
        with torch.no_grad():
            return self.query(images.to(self.device))

    @torch.no_grad()
    def iter_signals(
        self,
        dataloader: DataLoader,
        device: torch.device | str | None = None,
        desc: str = "signals",
    ) -> Iterator[Signals]:
        """Yield :meth:`signal_step` outputs for every batch of ``dataloader``, each with
        the ``query`` signal (:data:`QUERY`: the victim as a black box, valid while the
        iteration runs).

        Args:
            dataloader: yields dict batches as produced by miabench datasets.
            device: where to run the victim; defaults to where its parameters are.
            desc: progress bar label.
        """
        was_training = self.training
        self.eval()
        if device is not None:
            self.to(device)
        device = self.device
        try:
            for batch in tqdm(dataloader, desc=desc, leave=False):
                batch = {
                    k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                    for k, v in batch.items()
                }
                signals = self.signal_step(batch)
                signals[QUERY] = self._black_box
                yield signals
        finally:
            self.train(was_training)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Log ``val/<metric>`` for every per-sample metric of :meth:`utility` (its mean).

        Runs only when the data module serves a validation split (``split.n_validation >
        0``), e.g. for early stopping; victims with a validation loss override this.
        """
        values = self.utility(self.signal_step(batch))
        batch_size = len(batch["sample_id"]) if "sample_id" in batch else None
        for name, value in values.items():
            self.log(f"val/{name}", value.float().mean(), on_epoch=True, batch_size=batch_size)

    def utility(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Per-sample utility metrics of the victim's answer (e.g. L1, PSNR); optional."""
        return {}

    def utility_metrics(self) -> dict[str, Metric]:
        """Fresh dataset-level utility metrics (e.g. mIoU, mAP), one set per role; optional.

        Metrics that are not means of per-sample values (a confusion-matrix mIoU, a
        detector's mAP, verification accuracy over pairs) accumulate over every batch of a
        role through :meth:`update_utility_metrics` and are computed once at the end.
        """
        return {}

    def update_utility_metrics(self, metrics: dict[str, Metric], signals: Signals) -> None:
        """Update the metrics of :meth:`utility_metrics` with one batch of signals."""

    def describe(self) -> dict[str, Any]:
        """What shaped this victim beyond its config (e.g. backbone weights used); recorded."""
        return {}

    def benchmark_utility(self, datamodule: Any, device: torch.device | str) -> dict[str, Any]:
        """Utility on evaluation-only benchmarks the data module serves; optional.

        Face recognition scores LFW-style verification pairs here (``data.verification``):
        pairs that are neither members nor non-members, so they stay out of the per-role
        utility pass. The result is recorded under ``utility.benchmark``; ``{}`` (the
        default) records nothing.
        """
        return {}

    def auditable_layers(self) -> tuple[str, ...]:
        """Names of the layers whose activations :meth:`select_signals` can add; optional."""
        return ()

    def select_signals(self, names: Iterable[str]) -> None:  # noqa: B027
        """Compute, besides the fixed signals, those of ``names`` it can provide; optional.

        The attack stage calls this with every signal its attacks read before it streams
        signals, so a victim with costly optional signals (activations of named layers,
        read with forward hooks) computes only those asked for. The default computes only
        the fixed signals of :attr:`provides`.
        """
