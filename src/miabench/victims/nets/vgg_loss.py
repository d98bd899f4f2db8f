"""VGG-19 perceptual loss of pix2pixHD and SPADE.

Both papers add ``sum_i w_i |VGG_i(fake) - VGG_i(real)|_1`` over the relu1_1, relu2_1,
relu3_1, relu4_1 and relu5_1 activations of an ImageNet VGG-19, with weights 1/32, 1/16,
1/8, 1/4 and 1, on images in [-1, 1] fed as they are (neither official implementation
applies ImageNet normalisation). torchvision supplies the network; the slicing and weights
are the papers'.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from miabench.utils.pretrained import TorchvisionWeights
from miabench.utils.weights import (
    REPLACED,
    WeightsRecord,
    build_with_weights,
    weights_replaced,
)

log = logging.getLogger(__name__)

#: End index (exclusive) in ``vgg19().features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
SLICE_ENDS = (2, 7, 12, 21, 30)
LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
#: the ImageNet weights of the VGG loss (victims with a ``vgg_weights`` key declare them)
VGG_WEIGHTS = TorchvisionWeights("vgg19", "IMAGENET1K_V1")


class VGGLoss(nn.Module):
    """Frozen VGG-19 feature distance; a no-op (with a warning) when ``weights == "none"``.

    The network is held outside the module's parameters and state dict: it is a fixed
    function of ``weights`` (recorded by :meth:`describe` and in the victim config), so a
    trained victim's checkpoint does not carry 80 MB of ImageNet weights.

    Args:
        weights: ``"imagenet"`` (torchvision's IMAGENET1K_V1, downloaded or read from the
            torch hub cache), a local ``torch.save``'d state dict of torchvision's ``vgg19``
            (or of its ``features``), or ``"none"`` to switch the loss off.
    """

    def __init__(self, weights: str = "imagenet") -> None:
        super().__init__()
        self.weights = str(weights)
        self.record = WeightsRecord(self.weights)
        self.enabled = self.weights != "none"
        # A list hides the network from nn.Module registration (parameters, state_dict).
        self._features: list[nn.Sequential] = []
        if self.enabled and weights_replaced():
            # an imported victim is not trained: its training loss needs no VGG
            self.enabled, self.record = False, WeightsRecord(REPLACED)
            return
        if not self.enabled:
            log.warning(
                "VGG loss switched off (weights: none): the victim trains without its "
                "perceptual term; results record vgg_loss=false"
            )
            # Here `none` switches the loss off rather than building a random VGG, so the
            # loader is not called at all (nothing is built, no random numbers are drawn).
            return
        vgg, self.record = build_with_weights(
            self.weights,
            lambda pretrained: torchvision.models.vgg19(
                weights=torchvision.models.VGG19_Weights.IMAGENET1K_V1 if pretrained else None
            ),
            what="torchvision's VGG-19",
            imagenet=VGG_WEIGHTS.name,
            key="vgg_weights",
            # a state_dict of the whole vgg19 or of its `features` alone
            select=lambda model, state: (
                model.features if all(k.split(".", 1)[0].isdigit() for k in state) else model,
                state,
            ),
        )
        features = vgg.features[: SLICE_ENDS[-1]]
        features.requires_grad_(False).eval()
        self._features.append(features)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Weighted L1 between VGG features of ``fake`` and (detached) ``real``, in [-1, 1]."""
        if not self.enabled:
            return fake.new_zeros(())
        features = self._features[0]
        if next(features.parameters()).device != fake.device:
            features.to(fake.device)
        loss = fake.new_zeros(())
        x, y = fake, real.detach()
        start = 0
        for end, weight in zip(SLICE_ENDS, LAYER_WEIGHTS, strict=True):
            block = features[start:end]
            x, y = block(x), block(y)
            loss = loss + weight * F.l1_loss(x, y.detach())
            start = end
        return loss

    def describe(self) -> dict[str, Any]:
        """Whether the loss is on, and which weights it used."""
        return {"vgg_loss": self.enabled, **self.record.describe(prefix="vgg_")}
