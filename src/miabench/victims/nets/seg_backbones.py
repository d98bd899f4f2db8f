"""Backbones of the segmentation victims, with ``weights: imagenet | <path> | none``.

timm builds HRNet and Res2Net (``features_only``), segmentation-models-pytorch builds
UPerNet's ResNet encoders. ``none`` and a local checkpoint work offline; ``imagenet``
downloads (or reads the hub cache) and fails with advice when it cannot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
from torch import nn

from miabench.utils.pretrained import SmpEncoderWeights, TimmWeights, loads_imagenet
from miabench.utils.weights import build_with_weights


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

    def build(pretrained: bool, **file: Any) -> nn.Module:
        return timm.create_model(
            arch,
            pretrained=pretrained,
            features_only=True,
            out_indices=out_indices,
            **file,
            **kwargs,
        )

    model, record = build_with_weights(
        weights,
        build,
        what=f"timm's {arch}",
        imagenet=TimmWeights(arch).name,
        # timm reads the file itself, keeping the keys of the feature model
        from_file=lambda path: build(True, pretrained_cfg_overlay={"file": str(path)}),
    )
    return model, {"backbone": arch, **record.describe()}


@loads_imagenet(SmpEncoderWeights)
class SmpSegmenter(nn.Module):
    """A segmentation-models-pytorch network with ``weights: imagenet | <path> | none``.

    Args:
        architecture: smp architecture (``Unet``, ``DeepLabV3Plus``, ``UPerNet``, ...:
            ``smp.create_model``'s names).
        encoder: smp encoder name (``resnet34``, ``resnet50``, ...).
        num_classes: output channels (1 for a binary, sigmoid segmenter).
        weights: ``imagenet`` (smp's ImageNet encoder weights), ``none``, or a local
            torchvision-style ResNet state_dict for the encoder (its ``fc.*`` keys are dropped).
        options: keyword arguments of the architecture (e.g. Unet's ``encoder_depth`` and
            ``decoder_channels: [256, 128, 64, 32, 16]``), passed to smp as they are.
    """

    def __init__(
        self,
        architecture: str = "Unet",
        encoder: str = "resnet34",
        num_classes: int = 1,
        weights: str = "none",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # OmegaConf containers -> plain lists (smp checks list lengths and types)
        options = {
            k: list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
            for k, v in dict(options or {}).items()
        }
        self.model, record = build_with_weights(
            weights,
            lambda pretrained: smp.create_model(
                architecture,
                encoder_name=encoder,
                encoder_weights="imagenet" if pretrained else None,
                classes=num_classes,
                **options,
            ),
            what=f"smp's {encoder} encoder",
            imagenet=SmpEncoderWeights(encoder).name,
            # a torchvision ResNet state_dict, for the encoder only and without its head
            select=lambda model, state: (
                model.encoder,
                {k: v for k, v in state.items() if not k.startswith("fc.")},
            ),
        )
        self.info = {"architecture": architecture, "backbone": encoder, **record.describe()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, K, H, W) at the input size."""
        return self.model(x)

    def describe(self) -> dict[str, Any]:
        """Architecture, encoder and its weights."""
        return dict(self.info)


@loads_imagenet(SmpEncoderWeights)
class UPerNet(SmpSegmenter):
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
        super().__init__(
            "UPerNet", encoder, num_classes, weights, {"decoder_channels": decoder_channels}
        )
        # the recorded description keeps its earlier form (committed runs name no arch)
        self.info.pop("architecture")
