"""The predictability error of a query: its ground truth at 56x56, the per-sample
pixel split, and the held-out error of the linear predictor (batched on a device)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from miabench.attacks.predictability.backbone import FeatureBackbone, strict_float32
from miabench.attacks.predictability.reduction import linear_predictions
from miabench.utils.hashing import stable_hash


def resize_ground_truth(targets: torch.Tensor, size: int = 56) -> torch.Tensor:
    """Ground truth at ``size x size`` exactly as the reference: PIL bicubic on 8-bit images.

    The whole target is resized, not the centre crop the features see (as in the reference;
    see the package docstring).

    The reference calls ``gt_img.resize((56, 56))`` on the uint8 image file (PIL's default
    resample is bicubic for L/RGB) and ``ToTensor``. PIL's fixed-point 8-bit resampling has
    no exact tensor equivalent, so each (B, C, H, W) target in [0, 1] is rounded back to its
    8-bit levels and every channel resized as an 'L' image (PIL resizes RGB bands
    independently with the same kernel, so this equals the RGB resize).

    Returns:
        (B, C, size, size) float64 tensor in [0, 1] on the targets' device.
    """
    levels = torch.round(targets.detach().clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()
    out = np.empty((*levels.shape[:2], size, size), dtype=np.uint8)
    for i, j in np.ndindex(*levels.shape[:2]):
        img = Image.fromarray(levels[i, j])  # 2-D uint8: mode "L"
        out[i, j] = np.asarray(img.resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(out).to(targets.device, torch.float64) / 255.0


def split_sizes(n_pixels: int, fit_fraction: float = 0.7) -> tuple[int, int]:
    """``(n_fit, n_eval)`` as sklearn's ``train_test_split(train_size=f, test_size=1-f)``.

    sklearn rounds the held-out count up: ``n_eval = ceil((1 - f) * n)``; 2195 / 941 of 3136.
    """
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    n_eval = math.ceil((1.0 - fit_fraction) * n_pixels)
    return n_pixels - n_eval, n_eval


def pixel_split(
    sample_ids: Sequence[str], n_pixels: int, fit_fraction: float = 0.7, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random pixel split, a function of ``(seed, sample_id)`` only.

    Returns:
        ``(fit_idx, eval_idx)``: (B, n_fit) and (B, n_eval) int64 CPU tensors.
    """
    n_fit, _ = split_sizes(n_pixels, fit_fraction)
    perms = []
    for sid in sample_ids:
        gen = torch.Generator().manual_seed(int(stable_hash([seed, str(sid)], length=15), 16))
        perms.append(torch.randperm(n_pixels, generator=gen))
    perm = torch.stack(perms)
    return perm[:, :n_fit], perm[:, n_fit:]


def predict_pixels(
    maps: Sequence[torch.Tensor],
    y: torch.Tensor,
    fit: torch.Tensor,
    size: int = 56,
    dtype: torch.dtype = torch.float64,
    batch_size: int = 8,
) -> torch.Tensor:
    """The per-image linear predictions of ``y`` at every pixel, a few images at a time.

    The one core of the image and the segmentation predictability errors: they differ only in
    their targets (resized image vs one-hot label map) and in how they measure the prediction.

    Args:
        maps: native feature maps, each (B, C_k, h_k, w_k), on the device the solve runs on.
        y: (B, size*size, k) targets, row ``i*size + j``.
        fit: (B, size*size) bool mask of the pixels that fit each image's regression.
        size: upsampled side.
        dtype: dtype of the solve.
        batch_size: images solved together (bounds memory: ~30 MB per image in float64).

    Returns:
        (B, size*size, k) predictions in ``dtype`` on the maps' device.
    """
    device = maps[0].device
    preds = []
    for start in range(0, y.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        preds.append(
            linear_predictions(
                [m[sl] for m in maps], y[sl].to(device, dtype), fit[sl].to(device), size, dtype
            )
        )
    return torch.cat(preds)


def fit_mask(fit_idx: torch.Tensor, n_pixels: int) -> torch.Tensor:
    """(B, n_pixels) bool mask of the fit pixels ``fit_idx`` (B, n_fit) name."""
    return torch.zeros(fit_idx.shape[0], n_pixels, dtype=torch.bool).scatter_(1, fit_idx, True)


def predictability_errors_from_features(
    maps: Sequence[torch.Tensor],
    y: torch.Tensor,
    fit_idx: torch.Tensor,
    eval_idx: torch.Tensor,
    size: int = 56,
    dtype: torch.dtype = torch.float64,
    batch_size: int = 8,
) -> torch.Tensor:
    """Predictability errors from native feature maps (steps 2-4 of the reference).

    Args:
        maps: native maps, each (B, C_k, h_k, w_k).
        y: (B, size*size, k) ground-truth pixels, row ``i*size + j``.
        fit_idx: (B, n_fit) pixel indices of the regression fit.
        eval_idx: (B, n_eval) held-out pixel indices.
        size: upsampled side.
        dtype: dtype of the solve.
        batch_size: images solved together.

    Returns:
        (B,) float64 mean absolute error over held-out pixels and channels.
    """
    preds = predict_pixels(maps, y, fit_mask(fit_idx, y.shape[1]), size, dtype, batch_size)
    Y = y.to(preds.device, dtype)
    held = eval_idx.to(preds.device).unsqueeze(-1).expand(-1, -1, Y.shape[-1])
    diff = torch.gather(preds, 1, held) - torch.gather(Y, 1, held)
    return diff.abs().mean(dim=(1, 2), dtype=torch.float64)


class PredictabilityError:
    """Per-sample predictability error, batched on a device.

    Args:
        backbone: frozen feature extractor (its device is where everything runs).
        fit_fraction: share of the pixels that fit the regression (0.7).
        feature_size: side of the upsampled feature grid and of the resized ground truth.
        seed: seeds the per-sample pixel split together with the sample id.
        dtype: dtype of the regression solve.
        batch_size: images solved together.
    """

    def __init__(
        self,
        backbone: FeatureBackbone,
        fit_fraction: float = 0.7,
        feature_size: int = 56,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        batch_size: int = 8,
    ) -> None:
        split_sizes(feature_size * feature_size, fit_fraction)  # validates fit_fraction
        self.backbone = backbone
        self.fit_fraction = fit_fraction
        self.feature_size = feature_size
        self.seed = seed
        self.dtype = dtype
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, sample_ids: Sequence[str]
    ) -> torch.Tensor:
        """(B,) predictability errors of query ``inputs`` and their ground-truth ``targets``."""
        if len(sample_ids) != inputs.shape[0] or targets.shape[0] != inputs.shape[0]:
            raise ValueError("inputs, targets and sample_ids must have the same batch size")
        gt = resize_ground_truth(targets, self.feature_size)
        y = gt.flatten(2).mT  # (B, P, channels)
        fit_idx, eval_idx = pixel_split(sample_ids, y.shape[1], self.fit_fraction, self.seed)
        with strict_float32():
            maps = self.backbone(inputs)
            return predictability_errors_from_features(
                maps, y, fit_idx, eval_idx, self.feature_size, self.dtype, self.batch_size
            )

    def describe(self) -> dict[str, Any]:
        """Split and solver settings that shape the errors (recorded with the scores)."""
        return {
            "fit_fraction": self.fit_fraction,
            "feature_size": self.feature_size,
            "seed": self.seed,
            "dtype": str(self.dtype).removeprefix("torch."),
            "cuda_tf32": False,  # strict_float32() around the backbone and the solve
        }
