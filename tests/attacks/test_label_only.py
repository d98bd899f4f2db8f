"""Label-only attack (attacks/label_only.py): the augmentations move images, boxes and masks
alike, the agreement measures match hand-computed cases, and through a deployment's view
(boxes only / binary mask) a memorising model is attacked well above chance while a model
whose answers ignore membership stays near 0.5."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from miabench.attacks.label_only import (
    Augmentation,
    LabelOnlyDetection,
    LabelOnlySegmentation,
    augmentations,
    box_agreement,
    mask_agreement,
)
from miabench.defenses.truncation import BoxesOnly, quantize
from miabench.metrics.roc import roc_metrics
from miabench.pipeline.attack import attacker_signals, hidden_attacks
from miabench.victims.base import QUERY

SIZE = 32


def test_paper_augmentation_set() -> None:
    # identity + the 4d shifts with |dx| + |dy| = d, each mirrored: 2 (4d + 1) queries
    for d in (0, 1, 2, 3):
        augs = augmentations(flip=True, shift=d)
        assert len(augs) == 2 * (4 * d + 1) and len(set(augs)) == len(augs)
        assert augs[0] == Augmentation()
        assert all(abs(a.dx) + abs(a.dy) in (0, d) for a in augs)
    assert len(augmentations(flip=False, shift=2)) == 9
    with pytest.raises(ValueError, match="shift"):
        augmentations(shift=-1)


@pytest.mark.parametrize(
    "aug", [Augmentation(True, 0, 0), Augmentation(False, 3, -2), Augmentation(True, -5, 4)]
)
def test_boxes_and_masks_follow_the_image(aug: Augmentation) -> None:
    box = torch.tensor([[2.0, 5.0, 12.0, 9.0]])  # x1 y1 x2 y2
    image = torch.zeros(1, 3, SIZE, SIZE)
    image[..., 5:9, 2:12] = 1.0
    moved = aug.image(image)
    ys, xs = torch.nonzero(moved[0, 0], as_tuple=True)
    found = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float64)
    assert torch.equal(aug.boxes(box, SIZE, SIZE), found)
    mask = (image[:, 0] > 0).long()
    shifted = aug.image(mask, fill=255)
    assert torch.equal(shifted == 1, moved[:, 0] > 0)
    # the band a shift uncovers is unlabelled, not background
    assert (shifted == 255).sum() == SIZE * (abs(aug.dx) + abs(aug.dy)) - abs(aug.dx * aug.dy)


def test_box_pushed_out_of_the_frame_is_dropped_and_clipped() -> None:
    boxes = torch.tensor([[0.0, 0.0, 2.0, 4.0], [20.0, 0.0, 30.0, 10.0]])
    assert torch.equal(
        Augmentation(False, -3, 0).boxes(boxes, SIZE, SIZE),
        torch.tensor([[17.0, 0.0, 27.0, 10.0]], dtype=torch.float64),
    )
    clipped = Augmentation(False, 5, 0).boxes(boxes, SIZE, SIZE)
    assert clipped[1].tolist() == [25.0, 0.0, 32.0, 10.0]


def test_box_agreement_hand_computed() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    half = torch.tensor([[5.0, 0.0, 15.0, 10.0]])  # IoU 50 / 150 = 1/3
    none = torch.zeros(0, 4)
    assert box_agreement(a, a).item() == 1.0
    assert box_agreement(none, none).item() == 1.0
    assert box_agreement(none, a).item() == 0.0 and box_agreement(a, none).item() == 0.0
    assert box_agreement(half, a).item() == pytest.approx(1 / 3)
    # a spurious extra box: the matched IoU shared by max(n, m) = 2
    assert box_agreement(torch.cat([a, half + 20]), a).item() == pytest.approx(0.5)
    # f1: 2 TP / (n + m); the 1/3-IoU match is not a true positive at 0.5
    assert box_agreement(torch.cat([a, half + 20]), a, "f1").item() == pytest.approx(2 / 3)
    assert box_agreement(half, a, "f1").item() == 0.0


def test_mask_agreement_hand_computed() -> None:
    truth = torch.tensor([[[1, 1, 0, 255]]])
    pred = torch.tensor([[[1, 0, 1, 1]]])  # the unlabelled pixel does not count
    # foreground: intersection 1, union 3; Dice 2 * 1 / (2 + 2)
    assert mask_agreement(pred, truth, 1, 255, "iou").item() == pytest.approx(1 / 3)
    assert mask_agreement(pred, truth, 1, 255, "dice").item() == pytest.approx(0.5)
    empty = torch.zeros_like(truth)
    assert mask_agreement(empty, empty, 1, 255, "iou").item() == 1.0


# ------------------------------------------------------------------ memorising synthetic models


def _smooth_images(n: int, g: torch.Generator) -> torch.Tensor:
    """Images whose nearest neighbour survives a shift of a few pixels."""
    return F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=SIZE, mode="bilinear")


def _random_boxes(g: torch.Generator) -> torch.Tensor:
    k = int(torch.randint(1, 3, (1,), generator=g))
    xy = torch.randint(0, SIZE - 12, (k, 2), generator=g).float()
    wh = torch.randint(8, 12, (k, 2), generator=g).float()
    return torch.cat([xy, xy + wh], 1)


class Memoriser:
    """A model that memorised its training images (and their mirror images, as training
    with flips does): it answers any query with the ground truth of the nearest one."""

    def __init__(self, images: torch.Tensor, answers: list[Any], flip: Callable) -> None:
        self.images = torch.cat([images, images.flip(-1)])
        self.answers = [*answers, *(flip(a) for a in answers)]

    def nearest(self, queries: torch.Tensor) -> list[Any]:
        distance = torch.cdist(queries.flatten(1), self.images.flatten(1))
        return [self.answers[int(j)] for j in distance.argmin(1)]


def _score_all(attack: Any, signals: dict[str, Any], view: Any) -> np.ndarray:
    return attack.score(attacker_signals(signals, view))["score"].numpy()


def _detection_case(memorising: bool, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    images = _smooth_images(2 * n, g)
    boxes = [_random_boxes(g) for _ in range(2 * n)]
    flip = Augmentation(flip=True)
    model = Memoriser(images[:n], boxes[:n], lambda b: flip.boxes(b, SIZE, SIZE).float())

    def query(x: torch.Tensor) -> dict[str, Any]:
        if memorising:
            answers = model.nearest(x)
        else:  # boxes that have nothing to do with the image or its membership
            answers = [_random_boxes(g) for _ in range(len(x))]
        # a detector's raw answer: scores too (and a low-score tail the deployment drops)
        detections = [
            {
                "boxes": torch.cat([b, b + 1]),
                "scores": torch.cat([torch.full((len(b),), 0.9), torch.full((len(b),), 0.2)]),
            }
            for b in answers
        ]
        return {"detections": detections}

    signals = {
        "sample_id": [str(i) for i in range(2 * n)],
        "input": images,
        "boxes": boxes,
        "ignore": [torch.zeros(len(b), dtype=torch.bool) for b in boxes],
        "loss": torch.zeros(2 * n),
        "detections": query(images)["detections"],
        QUERY: query,
    }
    view = BoxesOnly(score_threshold=0.5)
    attack = LabelOnlyDetection(shift=2, score_threshold=0.5)
    assert not hidden_attacks({"label_only": attack}, view)
    labels = np.r_[np.ones(n), np.zeros(n)]
    return _score_all(attack, signals, view), labels


def test_label_only_detection_memoriser_well_above_chance() -> None:
    scores, labels = _detection_case(memorising=True)
    metrics = roc_metrics(scores, labels)
    assert metrics["auc"] > 0.9, metrics


def test_label_only_detection_uninformed_model_near_chance() -> None:
    scores, labels = _detection_case(memorising=False, n=64)
    assert 0.35 < roc_metrics(scores, labels)["auc"] < 0.65


def test_boxes_only_view_hides_scores_and_loss() -> None:
    view = BoxesOnly(score_threshold=0.5)
    signals = {
        "detections": [
            {
                "boxes": torch.tensor([[0.0, 0, 4, 4], [1, 1, 5, 5]]),
                "scores": torch.tensor([0.7, 0.3]),
            }
        ],  # fmt: skip
        "loss": torch.ones(1),
        "loss_terms": {"classification": torch.ones(1)},
    }
    seen = view(signals)
    assert "loss" not in seen and "loss_terms" not in seen
    assert seen["detections"][0]["boxes"].tolist() == [[0.0, 0, 4, 4]]
    assert seen["detections"][0]["scores"].tolist() == [1.0]
    from miabench.attacks.detection import DetectionLoss

    assert set(hidden_attacks({"loss": DetectionLoss(), "lo": LabelOnlyDetection()}, view)) == {
        "loss"
    }


def _disk(g: torch.Generator) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    cy, cx = torch.randint(6, SIZE - 6, (2,), generator=g)
    r = int(torch.randint(4, 8, (1,), generator=g))
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).long()


@pytest.mark.parametrize("memorising", [True, False])
def test_label_only_segmentation_on_binary_masks(memorising: bool) -> None:
    g = torch.Generator().manual_seed(1)
    n = 24
    images = _smooth_images(2 * n, g)
    masks = torch.stack([_disk(g) for _ in range(2 * n)])
    model = Memoriser(images[:n], list(masks[:n]), lambda m: m.flip(-1))
    seen_outputs: list[torch.Tensor] = []

    def query(x: torch.Tensor) -> dict[str, Any]:
        answers = model.nearest(x) if memorising else [_disk(g) for _ in range(len(x))]
        # a foreground probability; the output_mask view rounds it to the binary mask
        probs = torch.stack(answers)[:, None].float() * 0.6 + 0.2
        return {"output": probs}

    signals = {"sample_id": [str(i) for i in range(2 * n)], "input": images,
               "target": masks, "output": query(images)["output"], QUERY: query}  # fmt: skip

    def binary(s: dict[str, Any]) -> dict[str, Any]:
        out = quantize(s, levels=2)
        seen_outputs.append(out["output"])
        return out

    attack = LabelOnlySegmentation(shift=2, ignore_index=255)
    scores = _score_all(attack, signals, binary)
    # every answer the attack saw was a binary mask
    assert all(set(o.unique().tolist()) <= {0.0, 1.0} for o in seen_outputs)
    auc = roc_metrics(scores, np.r_[np.ones(n), np.zeros(n)])["auc"]
    if memorising:
        assert auc > 0.9
    else:
        assert 0.3 < auc < 0.7
