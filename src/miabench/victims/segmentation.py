"""Segmentation victims: UperNet, HRNetV2 (multi-class), PraNet, Inf-Net (binary).

One LightningModule serves every segmentation network (injected as ``net``). A network
returns logits, either a tensor or ``{"out": logits, "aux": [logits, ...], "edge": logits}``
for deep supervision; every map is upsampled to the label size before the loss.

Signals (see :mod:`miabench.victims.base`): ``input`` (B, 3, H, W) image, ``target``
(B, H, W) int64 label map (``ignore_index`` where unlabelled), ``output`` per-pixel class
probabilities (B, K, H, W) for multi-class victims or the foreground probability
(B, 1, H, W) for binary ones.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import (
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassJaccardIndex,
)

from miabench.metrics.segmentation import (
    binary_overlap,
    pixel_accuracy,
    pixel_loss,
    predicted_labels,
)
from miabench.victims.base import (
    OptimizerFactory,
    SchedulerFactory,
    Signals,
    Victim,
    optimizers_with_schedule,
)

LOSSES = ("ce", "structure", "bce")


# --------------------------------------------------------------------------------------
# Training losses
# --------------------------------------------------------------------------------------


def structure_loss(
    logits: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, kernel: int = 31
) -> torch.Tensor:
    """PraNet / Inf-Net loss: weighted BCE + weighted IoU, pixels near edges weighted up.

    ``w = 1 + 5 |avg_pool(mask) - mask|`` (the local average differs from the pixel near
    the object boundary). Written by hand: no library has it.

    Args:
        logits: (B, 1, H, W).
        mask: (B, 1, H, W) target in [0, 1] (smoothed labels allowed).
        valid: (B, 1, H, W) 1 for labelled pixels.
        kernel: side of the averaging window (31 at PraNet's 352x352).
    """
    pad = kernel // 2
    weight = (
        1
        + 5
        * (F.avg_pool2d(mask, kernel, stride=1, padding=pad, count_include_pad=False) - mask).abs()
    ) * valid
    bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    wbce = (weight * bce).sum((2, 3)) / weight.sum((2, 3)).clamp_min(1e-8)
    pred = torch.sigmoid(logits)
    inter = (pred * mask * weight).sum((2, 3))
    union = ((pred + mask) * weight).sum((2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def mask_edges(mask: torch.Tensor) -> torch.Tensor:
    """Boundary of a (B, 1, H, W) binary mask: morphological gradient with a 3x3 window."""
    dilated = F.max_pool2d(mask, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-mask, 3, stride=1, padding=1)
    return (dilated - eroded).clamp(0, 1)


class SegmentationVictim(Victim):
    """A segmentation network trained with (deeply supervised) per-pixel losses.

    Args:
        net: module mapping (B, 3, H, W) normalised images to logits or a dict of them.
        optimizer: partial optimiser (``_partial_: true``).
        num_classes: output channels: K > 1 classes (softmax) or 1 (binary, sigmoid).
        loss: ``ce`` (multi-class cross-entropy), ``structure`` (PraNet's weighted BCE +
            weighted IoU) or ``bce`` (binary).
        scheduler: optional partial LR scheduler (e.g. ``PolynomialLR``).
        scheduler_interval: ``epoch`` or ``step``.
        label_smoothing: smoothing of the training targets (a defense sets it).
        ignore_index: label of unlabelled pixels.
        aux_weight: weight of every deep-supervision map's loss (1 in PraNet / Inf-Net).
        edge_weight: weight of the edge map's BCE (Inf-Net).
        structure_kernel: window of the structure loss's edge weighting.
        normalize: ImageNet mean/std normalisation of the [0, 1] input (what the
            pretrained backbones expect).
    """

    provides = ("sample_id", "input", "target", "output")

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        loss: str = "ce",
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        label_smoothing: float = 0.0,
        ignore_index: int = 255,
        aux_weight: float = 1.0,
        edge_weight: float = 1.0,
        structure_kernel: int = 31,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"victim.module.loss must be one of {LOSSES}, got {loss!r}")
        if num_classes < 1:
            raise ValueError(f"victim.module.num_classes must be >= 1, got {num_classes}")
        if (num_classes == 1) != (loss in ("structure", "bce")):
            raise ValueError(
                f"loss {loss!r} does not fit num_classes={num_classes}: binary victims "
                "(num_classes=1) use 'structure' or 'bce', multi-class ones 'ce'"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.net = net
        self._optimizer = optimizer
        self._scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.num_classes = num_classes
        self.loss = loss
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        self.edge_weight = edge_weight
        self.structure_kernel = structure_kernel
        self.normalize = normalize
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False
        )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)

    @property
    def binary(self) -> bool:
        """One sigmoid output channel."""
        return self.num_classes == 1

    # -- forward ---------------------------------------------------------------------------

    def _maps(self, images: torch.Tensor, size: tuple[int, int]) -> dict[str, Any]:
        x = (images - self.mean) / self.std if self.normalize else images
        raw = self.net(x)
        maps = raw if isinstance(raw, dict) else {"out": raw}

        def up(t: torch.Tensor) -> torch.Tensor:
            return (
                F.interpolate(t, size=size, mode="bilinear", align_corners=False)
                if t.shape[-2:] != size
                else t
            )

        return {
            "out": up(maps["out"]),
            "aux": [up(t) for t in maps.get("aux", [])],
            "edge": up(maps["edge"]) if maps.get("edge") is not None else None,
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Per-pixel probabilities at the input size: (B, K, H, W) softmax or (B, 1, H, W) sigmoid."""
        logits = self._maps(images, tuple(images.shape[-2:]))["out"]
        return torch.sigmoid(logits) if self.binary else logits.softmax(1)

    # -- training --------------------------------------------------------------------------

    def _loss(self, maps: dict[str, Any], target: torch.Tensor, smoothing: float) -> torch.Tensor:
        all_maps = [maps["out"], *maps["aux"]]
        weights = [1.0] + [self.aux_weight] * len(maps["aux"])
        if not self.binary:
            losses = [
                F.cross_entropy(
                    m, target, ignore_index=self.ignore_index, label_smoothing=smoothing
                )
                for m in all_maps
            ]
            return sum(w * lo for w, lo in zip(weights, losses, strict=True))
        valid = (target != self.ignore_index).unsqueeze(1).float()
        mask = (target == 1).unsqueeze(1).float()
        soft = mask * (1 - smoothing) + 0.5 * smoothing
        if self.loss == "structure":
            losses = [structure_loss(m, soft, valid, self.structure_kernel) for m in all_maps]
        else:
            losses = [
                (F.binary_cross_entropy_with_logits(m, soft, reduction="none") * valid).sum()
                / valid.sum().clamp_min(1)
                for m in all_maps
            ]
        total = sum(w * lo for w, lo in zip(weights, losses, strict=True))
        if maps["edge"] is not None:
            # Inf-Net's edge branch learns the mask's boundary (the published data ship edge
            # maps drawn from the same masks).
            total = total + self.edge_weight * F.binary_cross_entropy_with_logits(
                maps["edge"], mask_edges(mask)
            )
        return total

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        target = batch["target"]
        maps = self._maps(batch["input"], tuple(target.shape[-2:]))
        loss = self._loss(maps, target, self.label_smoothing)
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

    # -- signals and utility ---------------------------------------------------------------

    def utility(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Per-sample ``loss`` (mean per-pixel CE/BCE), ``pixel_accuracy``; ``iou``/``dice`` if binary."""
        out, target = signals["output"], signals["target"]
        metrics = {
            "loss": pixel_loss(out, target, self.ignore_index),
            "pixel_accuracy": pixel_accuracy(out, target, self.ignore_index),
        }
        if self.binary:
            metrics.update(binary_overlap(out, target, self.ignore_index))
        return metrics

    def utility_metrics(self) -> dict[str, Metric]:
        """Dataset-level mIoU (multi-class) or pixel-level Dice (= F1) and IoU (binary); for
        a binary (face-area) segmenter also the pixel precision and the anonymization recall
        (share of all true foreground pixels predicted as foreground)."""
        if self.binary:
            return {
                "dataset_dice": BinaryF1Score(ignore_index=self.ignore_index),
                "dataset_iou": BinaryJaccardIndex(ignore_index=self.ignore_index),
                "dataset_precision": BinaryPrecision(ignore_index=self.ignore_index),
                "dataset_anonymization_recall": BinaryRecall(ignore_index=self.ignore_index),
            }
        # macro averaging skips classes absent from both prediction and truth (mmseg's nanmean)
        return {
            "miou": MulticlassJaccardIndex(
                self.num_classes, average="macro", ignore_index=self.ignore_index
            )
        }

    def update_utility_metrics(self, metrics: dict[str, Metric], signals: Signals) -> None:
        """Accumulate one batch of predicted labels against the ground truth."""
        pred, target = predicted_labels(signals["output"]), signals["target"]
        for metric in metrics.values():
            metric.update(pred, target)

    def describe(self) -> dict[str, Any]:
        """The network's backbone and the weights it started from."""
        describe = getattr(self.net, "describe", None)
        return describe() if callable(describe) else {}
