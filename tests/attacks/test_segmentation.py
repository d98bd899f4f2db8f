"""Segmentation attacks: reconstruction errors against torch/sklearn, the one-hot
predictability error against the sklearn reference, and the membership-error algebra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.transform import resize
from sklearn.linear_model import LinearRegression
from sklearn.metrics import accuracy_score, brier_score_loss

from miabench.attacks.predictability.error import pixel_split
from miabench.attacks.predictability.reference import reference_predictability_error
from miabench.attacks.segmentation import (
    SegmentationMembershipError,
    SegmentationPredictability,
    SegmentationReconstructionError,
    one_hot_ground_truth,
    prediction_error,
    segmentation_error,
)
from miabench.metrics.segmentation import EPS


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
    for i in range(b):
        X = _full_features(maps, i)
        Y = y[i].numpy()
        model = LinearRegression().fit(X[fit[i]], Y[fit[i]])
        wrong = model.predict(X[held[i]]).argmax(1) != Y[held[i]].argmax(1)
        assert pixel[i].item() == pytest.approx(wrong.mean())


def _full_features(maps: list[torch.Tensor], i: int) -> np.ndarray:
    """The reference's (3136, sum C_k) design matrix of image ``i`` (skimage resize)."""
    feats = [resize(m[i].numpy()[None], (1, m.shape[1], 56, 56), order=1) for m in maps]
    return np.concatenate(feats, axis=1).squeeze(0).reshape(-1, 56 * 56).T


def test_unlabelled_pixels_stay_out_of_the_fit_unless_legacy() -> None:
    """Against sklearn on the full features: the regression fits the labelled fit pixels
    only (legacy: all fit pixels, unlabelled ones as all-zero rows); both score the held-out
    labelled pixels, here by the Brier score."""
    b, k = 2, 3
    maps = _maps(b, seed=2)
    g = torch.Generator().manual_seed(7)
    target = torch.randint(0, k, (b, 7, 7), generator=g).repeat_interleave(8, 1)
    target = target.repeat_interleave(8, 2)  # (b, 56, 56)
    target[0, :20] = 255  # a large void band in the first image
    target[1, :, :6] = 255
    ids = ["s/1", "s/2"]
    y, valid = one_hot_ground_truth(target, k, 56)
    fit, held = pixel_split(ids, 56 * 56, 0.7, 0)
    for measure in ("cross_entropy", "error_rate"):  # finite although rows are unlabelled
        got = SegmentationPredictability(FixedMaps(maps), measure)(
            torch.zeros(b, 3, 56, 56), target, k, ids
        )
        assert torch.isfinite(got).all()
    for legacy in (False, True):
        pred = SegmentationPredictability(FixedMaps(maps), "brier", fit_unlabelled=legacy)
        errors = pred(torch.zeros(b, 3, 56, 56), target, k, ids)
        for i in range(b):
            X, Y, ok = _full_features(maps, i), y[i].numpy(), valid[i].numpy()
            rows = fit[i].numpy() if legacy else fit[i].numpy()[ok[fit[i].numpy()]]
            model = LinearRegression().fit(X[rows], Y[rows])
            scored = held[i].numpy()[ok[held[i].numpy()]]
            brier = ((model.predict(X[scored]) - Y[scored]) ** 2).sum(1).mean()
            assert errors[i].item() == pytest.approx(brier, rel=1e-6, abs=1e-9)


def test_brier_and_cross_entropy_measures() -> None:
    # a binary victim's per-pixel Brier score counts both classes: 2 (p - y)^2
    p = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    target = (torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(9)) > 0.5).long()
    brier = segmentation_error(p, target, "brier")
    for i in range(2):
        expected = 2 * brier_score_loss(target[i].flatten().numpy(), p[i, 0].flatten().numpy())
        assert brier[i].item() == pytest.approx(expected)
    # the linear prediction's cross-entropy: clipped to [EPS, 1] and renormalised
    truth = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=torch.float64)
    pred = torch.tensor(
        [[[1.2, -0.2, 0.0], [0.5, 0.5, 0.0], [0.6, 0.6, -0.2]]], dtype=torch.float64
    )
    ce = prediction_error(pred, truth, "cross_entropy")[0]
    assert ce[0].item() == pytest.approx(np.log1p(2 * EPS), abs=1e-12)
    assert ce[1].item() == pytest.approx(np.log(2), rel=1e-6)
    assert ce[2].item() == pytest.approx(-np.log(EPS / (1.2 + EPS)), rel=1e-9)
    assert torch.allclose(prediction_error(pred, truth, "brier")[0, 1], torch.tensor(0.5).double())


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
    assert info["weights"] == "none" and info["scale"] == "brier"
    assert info["error"] == "brier" and info["predictability"] == "brier"
    assert not info["fit_unlabelled"]
    torch.testing.assert_close(
        out["reconstruction_error"], segmentation_error(signals["output"], target, "brier")
    )
    legacy = SegmentationMembershipError(arch="resnet18", weights="none", scale="legacy")
    legacy.setup("cpu")
    info = legacy.describe()
    assert (info["error"], info["predictability"], info["fit_unlabelled"]) == ("loss", "l1", True)
    torch.testing.assert_close(
        legacy.score(signals)["reconstruction_error"],
        segmentation_error(signals["output"], target, "loss"),
    )
    # a binary victim's truth is {background, foreground}
    binary = attack.score(
        {**signals, "output": _probs(2, 2, 32, 32)[:, :1], "target": target.clamp(max=1)}
    )
    assert torch.isfinite(binary["score"]).all()


def test_scale_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="scale must be one of"):
        SegmentationMembershipError(weights="none", arch="resnet18", scale="nats")
    with pytest.raises(ValueError, match="only apply with scale=legacy"):
        SegmentationMembershipError(weights="none", arch="resnet18", error="loss")
    with pytest.raises(ValueError, match="predictability must be"):
        SegmentationMembershipError(
            weights="none", arch="resnet18", scale="legacy", predictability="brier"
        )
