"""Predictability / membership error: exact agreement with the skimage + sklearn reference."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import sklearn
import torch
import torchvision
from PIL import Image
from skimage.transform import resize
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from miabench.attacks.predictability.backbone import FeatureBackbone, strict_float32
from miabench.attacks.predictability.error import (
    pixel_split,
    predictability_errors_from_features,
    resize_ground_truth,
    split_sizes,
)
from miabench.attacks.predictability.membership_error import MembershipError
from miabench.attacks.predictability.reduction import (
    interpolation_matrix,
    linear_predictions,
    reduced_features,
)
from miabench.attacks.predictability.reference import reference_predictability_error
from miabench.attacks.predictability.solver import batched_min_norm_lstsq_predict

#: wide_resnet50_2's layer1..layer4 maps for a 224x224 input.
REAL_SHAPES = [(256, 56), (512, 28), (1024, 14), (2048, 7)]


@pytest.fixture(autouse=True)
def _single_blas_thread():
    """One BLAS thread for scipy/sklearn: torch's OpenMP workers and OpenBLAS's threads
    oversubscribe 2 cores and slow the reference several-fold."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _sklearn_predict(X_fit: np.ndarray, Y_fit: np.ndarray, X_eval: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            LinearRegression().fit(a, b).predict(c)
            for a, b, c in zip(X_fit, Y_fit, X_eval, strict=True)
        ]
    )


def _ours(X_fit: np.ndarray, Y_fit: np.ndarray, X_eval: np.ndarray) -> np.ndarray:
    args = [torch.from_numpy(a) for a in (X_fit, Y_fit, X_eval)]
    return batched_min_norm_lstsq_predict(*args).numpy()


# ------------------------------------------------------------------- batched solver


@pytest.mark.parametrize(("n", "d"), [(300, 50), (220, 384), (50, 50)])
def test_solver_matches_sklearn(n: int, d: int) -> None:
    """Over-determined, under-determined (minimum norm) and square (rank n-1 once centred)."""
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((3, n + 60, d))
    Y = rng.standard_normal((3, n + 60, 3))
    ours = _ours(X[:, :n], Y[:, :n], X[:, n:])
    np.testing.assert_allclose(ours, _sklearn_predict(X[:, :n], Y[:, :n], X[:, n:]), atol=1e-4)


@pytest.mark.skipif(
    tuple(int(v) for v in sklearn.__version__.split(".")[:2]) < (1, 9),
    reason="sklearn < 1.9 truncates at the dtype's epsilon, not at tol=1e-6",
)
def test_solver_rank_deficient_and_near_singular() -> None:
    """Exact dependencies, dead and constant columns, and a direction sklearn truncates."""
    rng = np.random.default_rng(7)
    n, d = 300, 60
    X = rng.standard_normal((4, n + 80, d))
    X[:, :, 10] = 2 * X[:, :, 3] - X[:, :, 4]  # exact linear dependency
    X[:, :, 20] = 0.0  # dead channel
    X[:, :, 21] = 5.0  # constant channel (absorbed by the intercept)
    X[1, :, 30] = X[1, :, 31] + 1e-10 * rng.standard_normal(n + 80)  # below sklearn's 1e-6 cutoff
    X[2, :, 40] = X[2, :, 41] + 1e-3 * rng.standard_normal(n + 80)  # ill-conditioned, kept
    Y = rng.standard_normal((4, n + 80, 2))
    ours = _ours(X[:, :n], Y[:, :n], X[:, n:])
    np.testing.assert_allclose(ours, _sklearn_predict(X[:, :n], Y[:, :n], X[:, n:]), atol=1e-4)


def test_solver_dual_rank_deficient() -> None:
    """Under-determined with duplicated fit rows: the kernel matrix is singular beyond 1."""
    rng = np.random.default_rng(8)
    n, d = 120, 200
    X = rng.standard_normal((2, n + 40, d))
    X[:, 5] = X[:, 6]
    Y = rng.standard_normal((2, n + 40, 1))
    ours = _ours(X[:, :n], Y[:, :n], X[:, n:])
    np.testing.assert_allclose(ours, _sklearn_predict(X[:, :n], Y[:, :n], X[:, n:]), atol=1e-4)


def test_solver_float32_agrees() -> None:
    """float32 inputs: the fast path where trusted, float64 beyond; same answer to 1e-4."""
    rng = np.random.default_rng(9)
    X = rng.standard_normal((2, 360, 50))
    X[1, :, 7] = X[1, :, 8] + 1e-9 * rng.standard_normal(360)  # forces the float64 re-solve
    Y = rng.standard_normal((2, 360, 2))
    args32 = [torch.from_numpy(a).float() for a in (X[:, :300], Y[:, :300], X[:, 300:])]
    ours = batched_min_norm_lstsq_predict(*args32)
    assert ours.dtype == torch.float32
    expected = _sklearn_predict(X[:, :300], Y[:, :300], X[:, 300:])
    np.testing.assert_allclose(ours.double().numpy(), expected, atol=1e-4)


# --------------------------------------------------------- features and reduction


@pytest.mark.parametrize("size", [7, 14, 28, 56])
def test_interpolation_matrix_equals_skimage_resize(size: int) -> None:
    maps = np.random.default_rng(size).standard_normal((1, 5, size, size))
    A = interpolation_matrix(size, 56).numpy()
    expected = resize(maps, (1, 5, 56, 56), order=1)
    np.testing.assert_allclose(A @ maps @ A.T, expected, rtol=0, atol=1e-12)


def test_reduced_features_match_sklearn_on_full_features() -> None:
    """The low-rank path equals sklearn on the reference's full 3136 x 3840 matrix."""
    rng = np.random.default_rng(0)
    # Non-negative like post-ReLU maps; float64 so sklearn's answer is the exact one.
    maps = [np.maximum(rng.standard_normal((1, c, s, s)), 0) for c, s in REAL_SHAPES]
    y = rng.random((1, 3136, 3))
    fit, held = pixel_split(["img"], 3136)
    X = reduced_features([torch.from_numpy(m) for m in maps])
    assert X.shape == (1, 3136, 256 + 512 + 195 + 48)
    ours = predictability_errors_from_features(
        [torch.from_numpy(m) for m in maps], torch.from_numpy(y), fit, held
    )
    ref = reference_predictability_error(
        [m[0] for m in maps], y[0], fit[0].numpy(), held[0].numpy()
    )
    assert abs(ours.item() - ref) < 1e-4
    assert abs(ours.item() - ref) < 1e-8  # in fact exact up to rounding


def test_blockwise_fit_equals_sklearn_on_any_fit_mask() -> None:
    """The native-resolution normal equations give sklearn's predictions at every pixel,
    for fit sets of different sizes per image (e.g. unlabelled pixels left out)."""
    rng = np.random.default_rng(4)
    shapes = [(24, 56), (40, 28), (200, 14), (300, 7)]  # the last two take the factor path
    maps = [np.maximum(rng.standard_normal((2, c, s, s)), 0) for c, s in shapes]
    maps[1][0, 5] = 0.0  # a dead channel
    y = rng.random((2, 3136, 3))
    fit = torch.from_numpy(rng.random((2, 3136)) < np.array([[0.7], [0.4]]))
    ours = linear_predictions([torch.from_numpy(m) for m in maps], torch.from_numpy(y), fit)
    X = reduced_features([torch.from_numpy(m) for m in maps]).numpy()
    for i in range(2):
        rows = fit[i].numpy()
        expected = LinearRegression().fit(X[i, rows], y[i, rows]).predict(X[i])
        np.testing.assert_allclose(ours[i].numpy(), expected, atol=1e-8)


# ----------------------------------------------------------- split and ground truth


def test_split_sizes_match_train_test_split() -> None:
    assert split_sizes(3136, 0.7) == (2195, 941)
    tr, ts = train_test_split(np.arange(3136), train_size=0.7, test_size=1 - 0.7)
    assert (len(tr), len(ts)) == (2195, 941)
    with pytest.raises(ValueError, match="fit_fraction"):
        split_sizes(3136, 1.0)


def test_split_is_deterministic_per_sample_id() -> None:
    fit_a, held_a = pixel_split(["x", "y", "z"], 3136, seed=0)
    fit_b, held_b = pixel_split(["z", "x"], 3136, seed=0)
    assert fit_a.shape == (3, 2195) and held_a.shape == (3, 941)
    # The split of an image does not depend on what else is in the batch.
    assert torch.equal(fit_a[0], fit_b[1]) and torch.equal(held_a[2], held_b[0])
    assert not torch.equal(fit_a[0], fit_a[1])
    assert not torch.equal(pixel_split(["x"], 3136, seed=1)[0][0], fit_a[0])
    both = torch.cat([fit_a[0], held_a[0]]).sort().values
    assert torch.equal(both, torch.arange(3136))


def test_ground_truth_resize_is_pil_bicubic() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(img).resize((56, 56))) / 255.0  # the reference call
    target = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    got = resize_ground_truth(target, 56)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------- backbone and attack


@pytest.fixture(scope="module")
def tiny_backbone() -> FeatureBackbone:
    return FeatureBackbone(arch="resnet18", weights="none")


def test_membership_error_end_to_end(tiny_backbone: FeatureBackbone) -> None:
    gen = torch.Generator().manual_seed(0)
    inputs = torch.rand(2, 3, 48, 64, generator=gen)
    targets = torch.round(torch.rand(2, 3, 48, 64, generator=gen) * 255) / 255
    outputs = (targets + 0.05 * torch.randn(2, 3, 48, 64, generator=gen)).clamp(0, 1)
    ids = ["train/0.png", "test/3.png"]
    attack = MembershipError("mem", weights="none", arch="resnet18", batch_size=1)
    attack.setup("cpu")
    out = attack.score({"sample_id": ids, "input": inputs, "target": targets, "output": outputs})
    assert set(out) == {"score", "reconstruction_error", "predictability_error", "membership_error"}
    assert all(v.shape == (2,) and torch.isfinite(v).all() for v in out.values())
    torch.testing.assert_close(
        out["membership_error"], out["reconstruction_error"] - out["predictability_error"]
    )
    torch.testing.assert_close(out["score"], -out["membership_error"])
    desc = attack.describe()
    assert {k: desc[k] for k in ("arch", "weights", "fit_fraction", "seed", "dtype")} == {
        "arch": "resnet18",
        "weights": "none",
        "fit_fraction": 0.7,
        "seed": 0,
        "dtype": "float64",
    }

    # The same numbers from the reference path on the very same backbone maps.
    maps = tiny_backbone(inputs)
    y = resize_ground_truth(targets).flatten(2).mT.numpy()
    fit, held = pixel_split(ids, 3136)
    for i in range(2):
        ref = reference_predictability_error(
            [m[i].double().numpy() for m in maps], y[i], fit[i].numpy(), held[i].numpy()
        )
        assert abs(out["predictability_error"][i].item() - ref) < 1e-4


def test_grayscale_inputs_are_repeated(tiny_backbone: FeatureBackbone) -> None:
    gray = torch.rand(1, 1, 60, 60)
    a = tiny_backbone(gray)
    b = tiny_backbone(gray.expand(-1, 3, -1, -1))
    assert [m.shape[1:] for m in a] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_backbone_stays_frozen_in_eval(tiny_backbone: FeatureBackbone) -> None:
    tiny_backbone.train()
    assert not tiny_backbone.training and not any(m.training for m in tiny_backbone.modules())
    assert not any(p.requires_grad for p in tiny_backbone.parameters())


def test_backbone_copies_stay_in_eval(tiny_backbone: FeatureBackbone) -> None:
    """torch.fx rebuilds the extractor on deepcopy / pickle, in training mode by default."""
    x = torch.rand(2, 3, 40, 40)
    for clone in (copy.deepcopy(tiny_backbone), pickle.loads(pickle.dumps(tiny_backbone))):
        assert not any(m.training for m in clone.modules())
        for a, b in zip(clone(x), tiny_backbone(x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("before", [True, False])
def test_strict_float32_sets_and_restores_tf32(before: bool) -> None:
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = before
        with pytest.raises(RuntimeError, match="inside"), strict_float32():
            assert [f.allow_tf32 for f in flags] == [False, False]
            raise RuntimeError("inside")
        assert [f.allow_tf32 for f in flags] == [before, before]
    finally:
        for f, value in zip(flags, saved, strict=True):
            f.allow_tf32 = value


def _tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_attack_runs_backbone_and_solve_without_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    from miabench.attacks.predictability import error

    seen = []
    solve = error.linear_predictions

    def spy_solve(*args, **kwargs):
        seen.append(("solve", _tf32_flags()))
        return solve(*args, **kwargs)

    monkeypatch.setattr(error, "linear_predictions", spy_solve)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    attack = MembershipError("mem", weights="none", arch="resnet18")
    attack.backbone.extractor.register_forward_pre_hook(
        lambda module, inputs: seen.append(("forward", _tf32_flags()))
    )
    x = torch.rand(1, 3, 32, 32)
    attack.score({"sample_id": ["a"], "input": x, "target": x, "output": x})
    assert seen == [("forward", (False, False)), ("solve", (False, False))]
    assert _tf32_flags()[1]  # restored
    assert attack.describe()["cuda_tf32"] is False


def test_missing_weights_path_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_weights.pth"
    with pytest.raises(FileNotFoundError, match="no_such_weights.pth"):
        FeatureBackbone(arch="resnet18", weights=str(missing))


def test_local_checkpoint_loads(tmp_path: Path, tiny_backbone: FeatureBackbone) -> None:
    torch.manual_seed(1)
    source = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    backbone = FeatureBackbone(arch="resnet18", weights=str(path))
    assert backbone.describe()["weights"] == str(path)
    assert len(backbone.describe()["weights_sha256"]) == 64
    x = torch.rand(1, 3, 64, 64)
    expected = torch.nn.Sequential(
        source.conv1, source.bn1, source.relu, source.maxpool, source.layer1
    ).eval()(backbone.preprocess(x))
    torch.testing.assert_close(backbone(x)[0], expected)
    assert not torch.equal(backbone(x)[0], tiny_backbone(x)[0])


def test_imagenet_download_failure_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self, *args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match="weights=none"):
        FeatureBackbone(arch="resnet18", weights="imagenet")


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(ValueError, match="ResNet-family"):
        FeatureBackbone(arch="vgg16", weights="none")


def test_membership_error_rejects_bad_dtype() -> None:
    with pytest.raises(ValueError, match="dtype"):
        MembershipError(weights="none", arch="resnet18", dtype="float16")
