"""Reconstruction-error attack: members are reproduced more faithfully than non-members.

Shafran, Peleg & Hoshen (ICCV 2021) score a query by the mean absolute difference between
the victim's output and the ground truth. Their code converts the generated image to 8-bit
before measuring, so by default the output is quantised to 8-bit levels first, the same way:
the pix2pix/pix2pixHD ``tensor2im`` helper scales to [0, 255] and casts with
``astype(uint8)``, which truncates.
"""

from __future__ import annotations

from typing import Any

import torch

from miabench.attacks.base import Attack
from miabench.victims.base import Signals


def reconstruction_error(
    output: torch.Tensor, target: torch.Tensor, quantize: bool = True
) -> torch.Tensor:
    """Per-sample mean absolute error between a victim output and its ground truth.

    Args:
        output: (B, C, H, W) victim outputs in [0, 1].
        target: (B, C, H, W) ground truth in [0, 1].
        quantize: clip the output to [0, 1] and truncate it to 8-bit levels
            (``floor(x*255)/255``) first, as the reference's uint8 cast does.

    Returns:
        (B,) float64 tensor on the inputs' device.
    """
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ")
    output = output.to(torch.float64)  # also the 8-bit levels k/255, which float32 rounds
    if quantize:
        output = torch.floor(output.clamp(0.0, 1.0) * 255.0) / 255.0
    diff = (output - target.to(torch.float64)).abs()
    return diff.flatten(1).mean(dim=1)


class ReconstructionError(Attack):
    """Threshold attack on the reconstruction error (lower error = more likely a member).

    Args:
        name: short name used in result files and tables.
        quantize: quantise the victim output to 8-bit levels before measuring.
    """

    requires = ("output", "target")

    def __init__(self, name: str = "reconstruction_error", quantize: bool = True) -> None:
        super().__init__(name)
        self.quantize = quantize

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Score one batch: ``score = -reconstruction_error``."""
        err = reconstruction_error(signals["output"], signals["target"], self.quantize)
        return {"score": -err, "reconstruction_error": err}

    def describe(self) -> dict[str, Any]:
        """Name, class and whether the output was quantised."""
        return {**super().describe(), "quantize": self.quantize}
