"""An image classifier victim: the standard membership-inference victim (Shokri et al. 2017).

Shafran, Peleg & Hoshen (ICCV 2021) argue that a task is easier to attack the more its
output carries about the query: an image-to-image model answers with H x W x C numbers, a
classifier with K. This victim is that low end, attacked with the same signals.

Signals (see :mod:`miabench.victims.base`): ``input`` (B, 3, H, W) image, ``target`` (B, 1, 1)
int64 class and ``output`` (B, K, 1, 1) class probabilities: a classifier's answer is a
1 x 1 label map, so the segmentation attacks' per-pixel measures apply as they are
(``attacks.segmentation.SegmentationReconstructionError`` with ``error: loss`` is the loss
threshold attack of Yeom et al. 2018), and ``attacks.confidence.Confidence`` thresholds the
top probability.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from miabench.metrics.segmentation import pixel_accuracy, pixel_loss
from miabench.victims.base import (
    OptimizerFactory,
    SchedulerFactory,
    Signals,
    Victim,
    optimizers_with_schedule,
)


class ClassifierVictim(Victim):
    """Cross-entropy image classifier around an injected ``net`` (logits (B, K)).

    Args:
        net: the network (e.g. :class:`~miabench.victims.nets.classifiers.TimmClassifier`).
        optimizer: partial optimizer.
        num_classes: classes K.
        scheduler: optional partial LR scheduler.
        scheduler_interval: ``epoch`` or ``step``.
        label_smoothing: smoothing of the training targets (a defense sets it).
        normalize: ImageNet mean/std normalisation of the [0, 1] input (what the
            pretrained backbones expect).
    """

    provides = ("sample_id", "input", "target", "output")

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        label_smoothing: float = 0.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"victim.module.num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.net = net
        self._optimizer = optimizer
        self._scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.normalize = normalize
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False
        )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K) logits of [0, 1] images."""
        x = (images - self.mean) / self.std if self.normalize else images
        out = self.net(x)
        if out.ndim != 2 or out.shape[1] != self.num_classes:
            raise ValueError(
                f"the classifier net returned {tuple(out.shape)}, expected (B, {self.num_classes})"
            )
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K) class probabilities."""
        return self.logits(images).softmax(1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        target = batch["target"].long().view(-1)
        loss = F.cross_entropy(
            self.logits(batch["input"]), target, label_smoothing=self.label_smoothing
        )
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=target.shape[0],
        )
        return loss

    def configure_optimizers(self) -> Any:
        return optimizers_with_schedule(
            self._optimizer(params=self.parameters()), self._scheduler, self.scheduler_interval
        )

    def signal_step(self, batch: dict[str, Any]) -> Signals:
        """Probabilities and class as 1 x 1 maps: ``output`` (B, K, 1, 1), ``target`` (B, 1, 1)."""
        probs = self(batch["input"])
        return {
            "sample_id": list(batch["sample_id"]),
            "input": batch["input"],
            "target": batch["target"].long().view(-1, 1, 1),
            "output": probs[:, :, None, None],
        }

    def query(self, images: torch.Tensor) -> Signals:
        """The probabilities as 1 x 1 maps, as :meth:`signal_step` returns them."""
        return {"output": self(images)[:, :, None, None]}

    def utility(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Per-sample cross-entropy ``loss`` and ``accuracy`` (0 or 1; its mean is the accuracy)."""
        out, target = signals["output"], signals["target"]
        return {"loss": pixel_loss(out, target), "accuracy": pixel_accuracy(out, target)}

    def describe(self) -> dict[str, Any]:
        """The network and the weights it started from."""
        describe = getattr(self.net, "describe", None)
        return describe() if callable(describe) else {}
