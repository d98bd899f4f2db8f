"""Anonymizer utility at the deployment threshold (metrics/anonymization.py) against
hand-computed tiny cases, and the binary segmenter's anonymization recall."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.classification import BinaryRecall

from miabench.metrics.anonymization import (
    AnonymizationMetric,
    box_mask,
    coverage,
    image_anonymization_recall,
)
from miabench.metrics.segmentation import binary_overlap


def test_box_mask_counts_pixel_centres() -> None:
    mask = box_mask(torch.tensor([[1.0, 2.0, 4.0, 3.0]]), 5, 6)
    assert mask.sum() == 3 and mask[2, 1:4].all()
    # a box edge inside a pixel covers it only when it passes the centre
    assert box_mask(torch.tensor([[0.4, 0.0, 0.6, 1.0]]), 2, 2).sum() == 1
    assert box_mask(torch.tensor([[0.6, 0.0, 1.4, 1.0]]), 2, 2).sum() == 0
    assert box_mask(torch.zeros(0, 4), 3, 3).sum() == 0


def test_coverage_and_anonymization_recall() -> None:
    truth = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 6.0]])  # 16 + 16 - 4 = 28 px
    pred = torch.tensor([[0.0, 0.0, 4.0, 2.0]])  # covers 8 px of the first face
    assert coverage(pred, truth, 8, 8) == (8, 28)
    assert image_anonymization_recall(pred, truth, 8, 8) == pytest.approx(8 / 28)
    assert image_anonymization_recall(pred, torch.zeros(0, 4), 8, 8) == 1.0


def test_anonymization_metric_hand_computed() -> None:
    size = (20, 20)
    preds = [
        {  # one exact hit, one false box, one box below the deployment threshold
            "boxes": torch.tensor([[0.0, 0, 4, 4], [10, 10, 14, 14], [5, 0, 9, 4]]),
            "scores": torch.tensor([0.9, 0.8, 0.3]),
        },
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)},
    ]
    target = [
        {"boxes": torch.tensor([[0.0, 0, 4, 4], [5, 0, 9, 4]]), "iscrowd": torch.tensor([0, 0])},
        {  # a missed face and an ignored one (left out)
            "boxes": torch.tensor([[0.0, 0, 2, 2], [4, 4, 8, 8]]),
            "iscrowd": torch.tensor([0, 1]),
        },
    ]
    # a confident box on the ignored face: no false positive either
    preds[1] = {"boxes": torch.tensor([[4.0, 4, 8, 8]]), "scores": torch.tensor([0.9])}
    values = {}
    for key in ("precision", "recall", "anonymization_recall"):
        metric = AnonymizationMetric(key, score_threshold=0.5)
        metric.update(preds[:1], target[:1], size)  # two batches, summed
        metric.update(preds[1:], target[1:], size)
        values[key] = metric.compute().item()
    assert values["precision"] == pytest.approx(1 / 2)  # 1 match of 2 returned boxes
    assert values["recall"] == pytest.approx(1 / 3)  # of 3 faces not ignored
    assert values["anonymization_recall"] == pytest.approx(16 / (16 + 16 + 4))
    # nothing returned, nothing to find: no false box, none missed
    empty = AnonymizationMetric("precision")
    empty.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}],
                 [{"boxes": torch.zeros(0, 4)}], size)  # fmt: skip
    assert empty.compute().item() == 1.0
    with pytest.raises(ValueError, match="key"):
        AnonymizationMetric("map")


def test_binary_segmenter_anonymization_recall() -> None:
    target = torch.tensor([[[1, 1, 1, 0], [1, 255, 0, 0]]])
    output = torch.tensor([[[[0.9, 0.2, 0.7, 0.8], [0.1, 0.9, 0.1, 0.1]]]])
    # 4 labelled face pixels, 2 predicted as face; the unlabelled one does not count
    assert binary_overlap(output, target)["anonymization_recall"].item() == pytest.approx(0.5)
    pooled = BinaryRecall(ignore_index=255)
    pooled.update((output[:, 0] >= 0.5).long(), target)
    assert pooled.compute().item() == pytest.approx(0.5)
