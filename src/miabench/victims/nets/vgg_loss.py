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

from miabench.utils.hashing import sha256_file
from miabench.utils.weights import checkpoint_path

log = logging.getLogger(__name__)

#: End index (exclusive) in ``vgg19().features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
SLICE_ENDS = (2, 7, 12, 21, 30)
LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


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
        self.weights_sha256: str | None = None
        self.enabled = self.weights != "none"
        # A list hides the network from nn.Module registration (parameters, state_dict).
        self._features: list[nn.Sequential] = []
        if not self.enabled:
            log.warning(
                "VGG loss switched off (weights: none): the victim trains without its "
                "perceptual term; results record vgg_loss=false"
            )
            return
        features = self._load(self.weights).features[: SLICE_ENDS[-1]]
        features.requires_grad_(False).eval()
        self._features.append(features)

    def _load(self, weights: str) -> nn.Module:
        if weights == "imagenet":
            try:
                return torchvision.models.vgg19(
                    weights=torchvision.models.VGG19_Weights.IMAGENET1K_V1
                )
            except Exception as err:  # any download failure gets the same advice
                raise RuntimeError(
                    f"could not load torchvision's ImageNet VGG-19 weights ({err}); set the "
                    "victim's vgg_weights to a local state_dict file or to none"
                ) from err
        path = checkpoint_path(weights, "VGG-19")
        self.weights_sha256 = sha256_file(path)
        model = torchvision.models.vgg19(weights=None)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if all(k.split(".", 1)[0].isdigit() for k in state):
            model.features.load_state_dict(state)
        else:
            model.load_state_dict(state)
        return model

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
        out: dict[str, Any] = {"vgg_loss": self.enabled, "vgg_weights": self.weights}
        if self.weights_sha256 is not None:
            out["vgg_weights_sha256"] = self.weights_sha256
        return out
