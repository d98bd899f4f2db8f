"""Normalisation layer factory shared by the image-to-image networks."""

from __future__ import annotations

from torch import nn


def make_norm(kind: str, channels: int) -> nn.Module:
    """Return a normalisation layer for ``channels`` feature maps.

    Args:
        kind: ``batch`` (pix2pix default), ``instance`` (CycleGAN/pix2pixHD style), ``group``
            (DP-SGD compatible: no cross-sample statistics) or ``none``.
        channels: number of channels.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "group":
        return nn.GroupNorm(min(32, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of batch|instance|group|none, got {kind!r}")


def conv_bias(kind: str) -> bool:
    """Convolutions before an affine norm need no bias of their own."""
    return kind in ("instance", "none")


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix's initialisation: N(0, 0.02) for convolutions, N(1, 0.02) for norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
