"""Residual blocks without in-place additions, for Opacus' per-sample gradient hooks.

Opacus records per-sample gradients with full backward hooks on every trainable layer;
PyTorch then hands each such layer's output on as a view made by a custom autograd
function, and an in-place change of that view (torchvision's residual blocks end with
``out += identity``) is refused ("Output 0 of BackwardHookFunction is a view and is being
modified inplace"). ``ModuleValidator.fix`` only replaces BatchNorm, and no library offers
out-of-place versions of these blocks, hence these subclasses: the same parameters, buffers
and state-dict keys, the same function, the sum written out of place. Their class is
swapped in (:func:`make_residuals_out_of_place`), so nothing is rebuilt or re-initialised.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import mobilenetv3, resnet


class OutOfPlaceBasicBlock(resnet.BasicBlock):
    """torchvision's ResNet ``BasicBlock`` with ``out = out + identity``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class OutOfPlaceBottleneck(resnet.Bottleneck):
    """torchvision's ResNet ``Bottleneck`` with ``out = out + identity``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class OutOfPlaceInvertedResidualV3(mobilenetv3.InvertedResidual):
    """torchvision's MobileNetV3 ``InvertedResidual`` with ``result = result + input``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torchvision's name)
        result = self.block(input)
        return result + input if self.use_res_connect else result


#: torchvision block → its out-of-place twin. MobileNetV2's InvertedResidual already adds
#: out of place (``x + self.conv(x)``) and needs none.
OUT_OF_PLACE: dict[type[nn.Module], type[nn.Module]] = {
    resnet.BasicBlock: OutOfPlaceBasicBlock,
    resnet.Bottleneck: OutOfPlaceBottleneck,
    mobilenetv3.InvertedResidual: OutOfPlaceInvertedResidualV3,
}


def make_residuals_out_of_place(network: nn.Module) -> int:
    """Swap every torchvision residual block of ``network`` for its out-of-place twin.

    Only exact classes are swapped (a subclass may have its own forward). Returns how many
    blocks were swapped; a network without such blocks is left untouched.
    """
    swapped = 0
    for module in network.modules():
        twin = OUT_OF_PLACE.get(type(module))
        if twin is not None:
            module.__class__ = twin
            swapped += 1
    return swapped
