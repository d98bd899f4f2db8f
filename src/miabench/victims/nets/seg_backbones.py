"""Backbones of the segmentation victims, with ``weights: imagenet | <path> | none``.

timm builds HRNet and Res2Net (``features_only``), segmentation-models-pytorch builds
UPerNet's ResNet encoders. ``none`` and a local checkpoint work offline; ``imagenet``
downloads (or reads the hub cache) and fails with advice when it cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn

from miabench.utils.hashing import sha256_file
from miabench.utils.weights import checkpoint_path


def _offline_advice(name: str, err: Exception) -> RuntimeError:
    return RuntimeError(
        f"could not load ImageNet weights for {name} ({type(err).__name__}: {err}); pass "
        "weights=<path to a local state_dict> or weights=none"
    )


def describe_weights(arch: str, weights: str, path: Path | None) -> dict[str, Any]:
    """What a victim records about its backbone."""
    info: dict[str, Any] = {"backbone": arch, "weights": str(weights)}
    if path is not None:
        info["weights_sha256"] = sha256_file(path)
    return info


def timm_features(
    arch: str, weights: str, out_indices: tuple[int, ...], **kwargs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """A timm ``features_only`` backbone and the description of its weights.

    Args:
        arch: timm model name (``hrnet_w18``, ``res2net50_26w_4s``, ...).
        weights: ``imagenet`` (timm's pretrained tag), ``none`` or a local checkpoint of
            the full classification model (timm filters it for the feature model).
        out_indices: feature levels returned.
        **kwargs: passed to ``timm.create_model`` (e.g. ``feature_location``).
    """
    weights = str(weights)
    path = None
    if weights == "none":
        model = timm.create_model(
            arch, pretrained=False, features_only=True, out_indices=out_indices, **kwargs
        )
    elif weights == "imagenet":
        try:
            model = timm.create_model(
                arch, pretrained=True, features_only=True, out_indices=out_indices, **kwargs
            )
        except Exception as err:  # any download failure gets the same advice
            raise _offline_advice(arch, err) from err
    else:
        path = checkpoint_path(weights)
        model = timm.create_model(
            arch,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(path)},
            features_only=True,
            out_indices=out_indices,
            **kwargs,
        )
    return model, describe_weights(arch, weights, path)


class UPerNet(nn.Module):
    """segmentation-models-pytorch's UPerNet with ``weights: imagenet | <path> | none``.

    Args:
        encoder: smp encoder name (``resnet50``, ``resnet101``).
        num_classes: output channels.
        weights: ``imagenet`` (smp's ImageNet encoder weights), ``none``, or a local
            torchvision-style ResNet state_dict (its ``fc.*`` keys are dropped).
        decoder_channels: width of the FPN/PPM decoder (mmseg's UperNet uses 512).
    """

    def __init__(
        self,
        encoder: str = "resnet50",
        num_classes: int = 150,
        weights: str = "none",
        decoder_channels: int = 512,
    ) -> None:
        super().__init__()
        weights = str(weights)
        path = None
        try:
            self.model = smp.UPerNet(
                encoder_name=encoder,
                encoder_weights="imagenet" if weights == "imagenet" else None,
                classes=num_classes,
                decoder_channels=decoder_channels,
            )
        except Exception as err:
            if weights != "imagenet":
                raise
            raise _offline_advice(encoder, err) from err
        if weights not in ("imagenet", "none"):
            path = checkpoint_path(weights)
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            self.model.encoder.load_state_dict(state)
        self.info = describe_weights(encoder, weights, path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) at the input size."""
        return self.model(x)

    def describe(self) -> dict[str, Any]:
        """Encoder and its weights."""
        return dict(self.info)
