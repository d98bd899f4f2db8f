"""Image classifiers for the classification victim, with ``weights: imagenet | <path> | none``.

timm builds the network (``resnet18`` by default; ``test_resnet`` is timm's tiny variant
for tests). ``none`` and a local checkpoint work offline; ``imagenet`` downloads (or reads
the hub cache) and fails with advice when it cannot. A pretrained classifier head is
replaced by a fresh one of ``num_classes`` outputs.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from miabench.utils.weights import checkpoint_path
from miabench.victims.nets.seg_backbones import _offline_advice, describe_weights


class TimmClassifier(nn.Module):
    """A timm classification network returning logits (B, num_classes).

    Args:
        arch: timm model name (``resnet18``, ``resnet10t``, ``test_resnet``, ...).
        num_classes: output classes.
        weights: ``imagenet`` (timm's pretrained tag), ``none`` or a local checkpoint of the
            classification model (its head is dropped when the class count differs).
        in_chans: input channels.
    """

    def __init__(
        self, arch: str, num_classes: int, weights: str = "none", in_chans: int = 3
    ) -> None:
        super().__init__()
        weights = str(weights)
        path = None
        if weights == "none":
            self.model = timm.create_model(
                arch, pretrained=False, num_classes=num_classes, in_chans=in_chans
            )
        elif weights == "imagenet":
            try:
                self.model = timm.create_model(
                    arch, pretrained=True, num_classes=num_classes, in_chans=in_chans
                )
            except Exception as err:  # any download failure gets the same advice
                raise _offline_advice(arch, err) from err
        else:
            path = checkpoint_path(weights, what=f"classifier {arch}")
            self.model = timm.create_model(
                arch,
                pretrained=True,
                pretrained_cfg_overlay={"file": str(path)},
                num_classes=num_classes,
                in_chans=in_chans,
            )
        self.info = describe_weights(arch, weights, path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def describe(self) -> dict[str, Any]:
        """Architecture and the weights it started from."""
        return dict(self.info)
