"""Segmentation attacks: reconstruction errors against torch/sklearn, the one-hot
predictability error against the sklearn reference, and the membership-error algebra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LinearRegression
from sklearn.metrics import accuracy_score

from miabench.attacks.predictability import pixel_split, reference_predictability_error
from miabench.attacks.segmentation import (
    SegmentationMembershipError,
    SegmentationPredictability,
    SegmentationReconstructionError,
    one_hot_ground_truth,
    segmentation_error,
)


def _probs(b: int = 3, k: int = 5, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, h, w, generator=g).softmax(1)


def test_loss_error_is_per_sample_cross_entropy_without_ignored_pixels() -> None:
    probs = _probs()
    target = torch.randint(0, 5, (3, 12, 10), generator=torch.Generator().manual_seed(1))
    target[0, :4] = 255
    err = segmentation_error(probs, target, "loss")
    ce = F.nll_loss(probs.log(), target, ignore_index=255, reduction="none")
    valid = (target != 255).float()
    expected = (ce * valid).sum((1, 2)) / valid.sum((1, 2))
    torch.testing.assert_close(err, expected.double(), rtol=1e-5, atol=1e-6)


def test_binary_loss_and_pixel_error_match_torch_and_sklearn() -> None:
    p = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)).clamp(0.01, 0.99)
    target = (torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(3)) > 0.5).long()
    bce = F.binary_cross_entropy(p[:, 0], target.float(), reduction="none").mean((1, 2))
    torch.testing.assert_close(segmentation_error(p, target, "loss"), bce.double())
    pixel = segmentation_error(p, target, "pixel_error")
    for i in range(2):
        acc = accuracy_score(target[i].flatten().numpy(), (p[i, 0] >= 0.5).long().flatten().numpy())
        assert pixel[i].item() == pytest.approx(1 - acc)
    with pytest.raises(ValueError, match="error must be"):
        segmentation_error(p, target, "l2")


def test_reconstruction_attack_scores_lower_error_higher() -> None:
    target = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(4))
    good = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 0.9 + 0.025
    bad = _probs(2, 4, 8, 8)
    attack = SegmentationReconstructionError()
    out = torch.cat([good, bad])
    scores = attack.score({"output": out, "target": torch.cat([target, target])})
    assert (scores["score"][:2] > scores["score"][2:]).all()
    assert torch.equal(scores["score"], -scores["reconstruction_error"])


def _maps(b: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = ((8, 14), (16, 7), (32, 4), (64, 2))
    return [torch.randn(b, c, s, s, generator=g, dtype=torch.float64) for c, s in shapes]


class FixedMaps(torch.nn.Module):
    """A stand-in backbone returning given feature maps."""

    def __init__(self, maps: list[torch.Tensor]) -> None:
        super().__init__()
        self.maps = maps

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.maps


def test_l1_predictability_matches_the_sklearn_reference() -> None:
    b, k = 2, 4
    maps = _maps(b)
    g = torch.Generator().manual_seed(5)
    coarse = torch.randint(0, k, (b, 6, 6), generator=g)
    target = coarse.repeat_interleave(10, 1).repeat_interleave(10, 2)  # (b, 60, 60)
    ids = ["a/1", "b/2"]
    pred = SegmentationPredictability(FixedMaps(maps), "l1", seed=3)
    errors = pred(torch.zeros(b, 3, 60, 60), target, k, ids)
    y, _ = one_hot_ground_truth(target, k, 56)
    fit, held = pixel_split(ids, 56 * 56, 0.7, 3)
    for i in range(b):
        ref = reference_predictability_error(
            [m[i].numpy() for m in maps], y[i].numpy(), fit[i].numpy(), held[i].numpy()
        )
        # l1 = half the per-pixel L1 over classes = K/2 x the reference's mean over channels
        assert errors[i].item() == pytest.approx(0.5 * k * ref, rel=1e-6, abs=1e-9)

    pixel = SegmentationPredictability(FixedMaps(maps), "pixel_error", seed=3)(
        torch.zeros(b, 3, 60, 60), target, k, ids
    )
    from skimage.transform import resize

    for i in range(b):
        feats = [resize(m[i].numpy()[None], (1, m.shape[1], 56, 56), order=1) for m in maps]
        X = np.concatenate(feats, axis=1).squeeze(0).reshape(-1, 56 * 56).T
        Y = y[i].numpy()
        model = LinearRegression().fit(X[fit[i]], Y[fit[i]])
        wrong = model.predict(X[held[i]]).argmax(1) != Y[held[i]].argmax(1)
        assert pixel[i].item() == pytest.approx(wrong.mean())


def test_ignored_pixels_are_left_out_of_the_predictability_error() -> None:
    maps = _maps(1, seed=1)
    target = torch.full((1, 56, 56), 255)
    err = SegmentationPredictability(FixedMaps(maps), "l1")(
        torch.zeros(1, 3, 56, 56), target, 3, ["x"]
    )
    assert err.item() == 0.0
    with pytest.raises(ValueError, match="outside"):
        one_hot_ground_truth(torch.full((1, 8, 8), 7), 3, 8)


def test_membership_error_is_the_difference() -> None:
    attack = SegmentationMembershipError(arch="resnet18", weights="none", batch_size=2)
    attack.setup("cpu")
    g = torch.Generator().manual_seed(6)
    images = torch.rand(2, 3, 32, 32, generator=g)
    target = torch.randint(0, 3, (2, 32, 32), generator=g)
    signals = {
        "sample_id": ["p", "q"],
        "input": images,
        "target": target,
        "output": _probs(2, 3, 32, 32),
    }
    out = attack.score(signals)
    torch.testing.assert_close(
        out["membership_error"], out["reconstruction_error"] - out["predictability_error"]
    )
    torch.testing.assert_close(out["score"], -out["membership_error"])
    assert (out["predictability_error"] > 0).all()
    info = attack.describe()
    assert info["weights"] == "none" and info["error"] == "loss" and info["predictability"] == "l1"
    # a binary victim's truth is {background, foreground}
    binary = attack.score(
        {**signals, "output": _probs(2, 2, 32, 32)[:, :1], "target": target.clamp(max=1)}
    )
    assert torch.isfinite(binary["score"]).all()
