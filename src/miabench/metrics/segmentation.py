"""Per-sample segmentation measures computed from signals: pixel loss, accuracy, IoU, Dice.

The segmentation victims report them as utility, and the segmentation attacks score members
with them, so they live with the metrics rather than inside either. Signals follow
:mod:`miabench.victims.base`: ``output`` (B, K, H, W) class probabilities or a (B, 1, H, W)
foreground probability, ``target`` (B, H, W) int64 labels with ``ignore_index`` for
unlabelled pixels. Written by hand because torchmetrics' segmentation metrics reduce over
the batch, and these must stay per sample (one value per query).
"""

from __future__ import annotations

import torch

#: clamps probabilities before the log of the per-pixel losses computed from signals
EPS = 1e-7


def _valid(target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    return (target != ignore_index).float()


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # An image with no labelled pixel has no error to speak of: 0, not NaN.
    return (values * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1.0)


def pixel_loss(output: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Per-sample mean per-pixel loss of a probability output against a label map.

    Cross-entropy ``-log p[target]`` for (B, K, H, W) class probabilities (K > 1), binary
    cross-entropy for a (B, 1, H, W) foreground probability; ignored pixels excluded.

    Returns:
        (B,) float64.
    """
    _check(output, target)
    p = output.to(torch.float64).clamp(EPS, 1.0 - EPS)
    valid = _valid(target, ignore_index).to(torch.float64)
    labels = torch.where(target == ignore_index, 0, target)
    if output.shape[1] == 1:
        y = labels.to(torch.float64)
        loss = -(y * p[:, 0].log() + (1 - y) * (1 - p[:, 0]).log())
    else:
        loss = -p.gather(1, labels.unsqueeze(1)).squeeze(1).log()
    return _masked_mean(loss, valid)


def predicted_labels(output: torch.Tensor) -> torch.Tensor:
    """(B, H, W) argmax labels (threshold 0.5 for a binary output)."""
    if output.shape[1] == 1:
        return (output[:, 0] >= 0.5).long()
    return output.argmax(1)


def pixel_accuracy(
    output: torch.Tensor, target: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """Per-sample share of labelled pixels predicted right; (B,) float64."""
    _check(output, target)
    correct = (predicted_labels(output) == target).to(torch.float64)
    return _masked_mean(correct, _valid(target, ignore_index).to(torch.float64))


def binary_overlap(
    output: torch.Tensor, target: torch.Tensor, ignore_index: int = 255
) -> dict[str, torch.Tensor]:
    """Per-sample IoU and Dice of a thresholded binary output (1 when both are empty), and
    the ``anonymization_recall``: the share of true foreground (face) pixels predicted as
    foreground, i.e. masked by an anonymizer (1 when the image has none)."""
    valid = target != ignore_index
    pred = (predicted_labels(output) == 1) & valid
    truth = (target == 1) & valid
    inter = (pred & truth).flatten(1).sum(1).double()
    p, t = pred.flatten(1).sum(1).double(), truth.flatten(1).sum(1).double()
    union = p + t - inter
    empty = union == 0
    iou = torch.where(empty, 1.0, inter / union.clamp_min(1))
    dice = torch.where(empty, 1.0, 2 * inter / (p + t).clamp_min(1))
    recall = torch.where(t == 0, 1.0, inter / t.clamp_min(1))
    return {"iou": iou, "dice": dice, "anonymization_recall": recall}


def _check(output: torch.Tensor, target: torch.Tensor) -> None:
    if (
        output.ndim != 4
        or target.ndim != 3
        or output.shape[0] != target.shape[0]
        or output.shape[-2:] != target.shape[-2:]
    ):
        raise ValueError(
            f"expected output (B, K, H, W) and target (B, H, W) of one batch and size, got "
            f"{tuple(output.shape)} and {tuple(target.shape)}"
        )
