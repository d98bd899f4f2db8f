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

from miabench.utils.pretrained import TimmWeights, loads_imagenet
from miabench.utils.weights import build_with_weights


@loads_imagenet(TimmWeights)
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

        def build(pretrained: bool, **file: Any) -> nn.Module:
            return timm.create_model(
                arch, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **file
            )

        self.model, record = build_with_weights(
            weights,
            build,
            what=f"classifier {arch}",
            imagenet=TimmWeights(arch).name,
            # timm reads the file itself and drops a head of another class count
            from_file=lambda path: build(True, pretrained_cfg_overlay={"file": str(path)}),
        )
        self.info = {"backbone": arch, **record.describe()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def describe(self) -> dict[str, Any]:
        """Architecture and the weights it started from."""
        return dict(self.info)
