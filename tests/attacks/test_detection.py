"""Detection attacks on hand-made detections: loss sums, confidence statistics, box error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miabench.attacks.detection import (
    BoxError,
    DetectionConfidence,
    DetectionLoss,
    box_error,
    confidence_statistics,
)


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


def test_detection_loss_adds_selected_terms() -> None:
    terms = {
        "classification": torch.tensor([0.5, 2.0]),
        "bbox_regression": torch.tensor([1.0, 0.1]),
    }
    out = DetectionLoss().score({"loss_terms": terms})
    np.testing.assert_allclose(out["score"], [-1.5, -2.1])
    out = DetectionLoss(terms=["bbox_regression"]).score({"loss_terms": terms})
    np.testing.assert_allclose(out["score"], [-1.0, -0.1])
    np.testing.assert_allclose(out["classification"], [0.5, 2.0])
    with pytest.raises(ValueError, match=r"loss terms \['bbox_ctrness'\] not computed"):
        DetectionLoss(terms=["bbox_ctrness"]).score({"loss_terms": terms})


def test_confidence_statistics_match_numpy() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(9)
    stats = confidence_statistics(torch.from_numpy(scores), k=4, threshold=0.5)
    assert float(stats["max"]) == pytest.approx(scores.max())
    assert float(stats["topk_mean"]) == pytest.approx(np.sort(scores)[-4:].mean())
    assert float(stats["count"]) == (scores >= 0.5).sum()
    # fewer detections than k: the missing ones count as zero scores
    few = confidence_statistics(torch.tensor([0.9, 0.6]), k=4)
    assert float(few["topk_mean"]) == pytest.approx(1.5 / 4)
    none = confidence_statistics(torch.zeros(0), k=4)
    assert all(float(v) == 0.0 for v in none.values())

    detections = [{"scores": torch.tensor([0.2, 0.9])}, {"scores": torch.zeros(0)}]
    out = DetectionConfidence(statistic="count", threshold=0.5).score({"detections": detections})
    assert out["score"].tolist() == [1.0, 0.0]
    np.testing.assert_allclose(out["max"], [0.9, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="statistic must be one of"):
        DetectionConfidence(statistic="median")


def test_box_error_matches_one_to_one() -> None:
    truth = [[0.0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]
    # one good match, one shifted match, the third face missed, plus a far false alarm
    pred = [[21.0, 21, 31, 31], [0, 0, 10, 9], [80, 80, 90, 90]]
    out = box_error(torch.tensor(pred), torch.tensor(truth))
    ious = [_iou(pred[1], truth[0]), _iou(pred[0], truth[1])]
    assert float(out["mean_iou"]) == pytest.approx(np.mean(ious))
    assert float(out["miss_rate"]) == pytest.approx(1 / 3)
    assert float(out["false_positives"]) == 1
    assert float(out["box_error"]) == pytest.approx(1 - np.mean(ious) + 1 / 3)

    # two detections on one face: only one matches, the other is a false positive
    twice = box_error(torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]), torch.tensor(truth[:1]))
    assert float(twice["box_error"]) == 0 and float(twice["false_positives"]) == 1
    # an overlap below the IoU threshold is a miss
    low = box_error(torch.tensor([[5.0, 5, 15, 15]]), torch.tensor(truth[:1]), iou_threshold=0.5)
    assert float(low["miss_rate"]) == 1 and float(low["box_error"]) == 2
    # no face: 0 without detections, 1 with any
    assert float(box_error(torch.zeros(0, 4), torch.zeros(0, 4))["box_error"]) == 0
    assert float(box_error(torch.tensor(pred), torch.zeros(0, 4))["box_error"]) == 1


def test_box_error_attack_filters_scores_and_ignored_faces() -> None:
    face, invalid = [0.0, 0, 10, 10], [20.0, 20, 30, 30]
    signals = {
        "detections": [
            {"boxes": torch.tensor([face, [0.0, 0, 10, 10]]), "scores": torch.tensor([0.9, 0.1])},
            {"boxes": torch.tensor([face]), "scores": torch.tensor([0.3])},
        ],
        "boxes": [torch.tensor([face, invalid])] * 2,
        "ignore": [torch.tensor([False, True])] * 2,
    }
    out = BoxError(score_threshold=0.5).score(signals)
    # image 1: the confident detection is exact, the invalid face is not required;
    # image 2: the only detection is below the score threshold, so the face is missed
    assert out["box_error"].tolist() == [0.0, 2.0]
    assert out["false_positives"].tolist() == [0.0, 0.0]
    assert out["score"].tolist() == [0.0, -2.0]
