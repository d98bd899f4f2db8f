"""Per-sample utility of a victim's image outputs (how good the translation is)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

#: Grey levels of the 8-bit images PSNR is capped against (see :func:`psnr_cap`).
LEVELS = 255

# Standard SSIM window (Wang et al. 2004): Gaussian, sigma 1.5, 11 pixels wide.
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11


def _ssim_sigma(height: int, width: int) -> float:
    """Gaussian sigma whose window fits the image.

    torchmetrics reflect-pads by half the window, which fails once the pad reaches the
    image side, and a window wider than the image compares mostly reflected pixels. Smaller
    images get the largest odd window that fits, with sigma scaled in proportion
    (torchmetrics derives the window from sigma as ``2 * int(3.5 * sigma + 0.5) + 1``).
    """
    side = min(height, width)
    if side >= SSIM_WINDOW:
        return SSIM_SIGMA
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    window = side if side % 2 else side - 1
    return SSIM_SIGMA * window / SSIM_WINDOW


def psnr_cap(n_values: int) -> float:
    """Finite PSNR (dB, ``data_range=1``) given to an exact copy of ``n_values`` values.

    An exact copy has MSE 0 and an infinite PSNR, which JSON cannot store and a mean turns
    into ``inf``. PSNR is therefore computed with its MSE floored at half the smallest MSE an
    imperfect 8-bit image can have (one value off by one grey level):
    ``1 / (2 · 255² · n_values)``. An exact copy then scores above every 8-bit output that is
    not one, and the cap is ``10·log10(2 · 255² · n)``: 92.0 dB for 3×64×64, 104.1 dB for
    3×256×256.
    """
    return 10.0 * math.log10(2.0 * LEVELS**2 * n_values)


@torch.no_grad()
def image_utility(output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample L1, PSNR and SSIM of ``output`` against ``target``.

    Args:
        output: (B, C, H, W) victim outputs in [0, 1].
        target: (B, C, H, W) ground truth in [0, 1].

    Returns:
        ``{"l1", "psnr", "ssim"}``, each a (B,) float tensor on the inputs' device. L1 is the
        mean absolute error; PSNR and SSIM use ``data_range=1``. PSNR is capped at
        :func:`psnr_cap` (an exact copy gets that finite value, not ``inf``). SSIM uses the standard 11-pixel Gaussian window, shrunk for images smaller
        than 11 pixels (see :func:`_ssim_sigma`).
    """
    if output.shape != target.shape or output.ndim != 4:
        raise ValueError(
            f"expected two (B, C, H, W) tensors of one shape, got {tuple(output.shape)} and "
            f"{tuple(target.shape)}"
        )
    output, target = output.float(), target.float()
    l1 = (output - target).abs().flatten(1).mean(dim=1)
    psnr = peak_signal_noise_ratio(output, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    psnr = psnr.clamp(max=psnr_cap(output[0].numel()))
    ssim = structural_similarity_index_measure(
        output,
        target,
        sigma=_ssim_sigma(output.shape[-2], output.shape[-1]),
        data_range=1.0,
        reduction="none",
    )
    return {"l1": l1, "psnr": psnr, "ssim": ssim}


def summarize(per_sample: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, float]:
    """Mean of each per-sample metric.

    Args:
        per_sample: metric name -> (N,) values (numpy array or tensor).

    Returns:
        metric name -> mean as a Python float (NaN for an empty array, without a warning).
    """
    out: dict[str, float] = {}
    for name, values in per_sample.items():
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().double().numpy()
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        out[name] = float(arr.mean()) if arr.size else float("nan")
    return out
