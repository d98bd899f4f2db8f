"""Per-sample image utility metrics against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from miabench.metrics.utility import image_utility, summarize


def test_l1_and_psnr_by_hand() -> None:
    target = torch.zeros(2, 3, 16, 16)
    output = target.clone()
    output[0] += 0.1  # every pixel off by 0.1: L1 0.1, MSE 0.01, PSNR 20 dB
    output[1, :, :8] = 0.5  # half the pixels off by 0.5: L1 0.25, MSE 0.125
    out = image_utility(output, target)
    assert out["l1"].tolist() == pytest.approx([0.1, 0.25], abs=1e-6)
    assert out["psnr"].tolist() == pytest.approx([20.0, -10 * math.log10(0.125)], abs=1e-4)
    assert out["ssim"].shape == (2,)


@pytest.mark.parametrize("size", [32, 16, 8, 5])
def test_identical_images_have_ssim_one(size: int) -> None:
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(size))
    ssim = image_utility(images, images.clone())["ssim"]
    assert ssim.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)


def test_noise_lowers_ssim_on_small_images() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 8, 8, generator=gen)
    noisy = (images + 0.3 * torch.randn(images.shape, generator=gen)).clamp(0, 1)
    assert (image_utility(noisy, images)["ssim"] < 0.95).all()


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        image_utility(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_summarize_means() -> None:
    out = summarize({"l1": np.array([0.1, 0.3]), "psnr": torch.tensor([10.0, 20.0])})
    assert out == pytest.approx({"l1": 0.2, "psnr": 15.0})
    assert all(isinstance(v, float) for v in out.values())
