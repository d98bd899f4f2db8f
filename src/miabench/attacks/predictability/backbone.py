"""The frozen feature backbone of the predictability error (torchvision ResNet,
layer1..layer4 maps of the reference's preprocessing), and the TF32 switch its attacks
run under."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.transforms.v2 import functional as TF

from miabench.utils.pretrained import TorchvisionWeights, loads_imagenet
from miabench.utils.weights import build_with_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYERS = ("layer1", "layer2", "layer3", "layer4")

_RESNET_PREFIXES = ("resnet", "resnext", "wide_resnet")


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """Switch off TF32 for CUDA matmuls and cuDNN convolutions; restore the previous flags.

    cuDNN allows TF32 by default, so on Ampere and newer GPUs the backbone's convolutions
    would round their inputs to 10-bit mantissas and a GPU attack would not agree with a CPU
    one to the stated tolerance. The attacks run their backbone forward and their solve
    inside this context (recorded as ``cuda_tf32: false`` in ``describe()``). On CPU the flags
    have no effect.
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def feature_weights(arch: str) -> TorchvisionWeights:
    """The ImageNet weights :class:`FeatureBackbone` loads for ``arch``."""
    return TorchvisionWeights(arch, "IMAGENET1K_V1")


@loads_imagenet(feature_weights)
class FeatureBackbone(nn.Module):
    """Frozen torchvision ResNet returning the layer1..layer4 maps of preprocessed images.

    Args:
        arch: a torchvision ResNet-family builder name (``wide_resnet50_2`` as in the
            paper; ``resnet18`` is handy in tests).
        weights: ``"imagenet"`` (torchvision's IMAGENET1K_V1 weights, downloaded or taken
            from the torch hub cache), a local ``state_dict`` file written by ``torch.save``,
            or ``"none"`` (random initialisation from a fixed seed, for tests).
    """

    def __init__(self, arch: str = "wide_resnet50_2", weights: str = "imagenet") -> None:
        super().__init__()
        if not arch.startswith(_RESNET_PREFIXES) or arch not in torchvision.models.list_models(
            module=torchvision.models
        ):
            raise ValueError(f"arch must be a torchvision ResNet-family model, got '{arch}'")
        self.arch = arch
        self.weights = str(weights)
        enum = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
        model, self.record = build_with_weights(
            self.weights,
            lambda pretrained: torchvision.models.get_model(
                arch, weights=enum if pretrained else None
            ),
            what=f"torchvision's {arch}",
            imagenet=feature_weights(arch).name,
            # A fixed seed keeps "random" features identical from run to run, whatever ran
            # before (unlike a victim's `none`, which follows the run's seed).
            seed_none=0,
        )
        self.extractor = create_feature_extractor(model, return_nodes={k: k for k in LAYERS})
        self.extractor.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureBackbone:
        """Stay in eval mode: batch-norm statistics of a frozen backbone must not move."""
        return super().train(False)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Back in eval mode after ``copy.deepcopy`` or unpickling.

        torch.fx's ``GraphModule`` rebuilds its submodules on copy and pickle, and they come
        back in training mode (batch norm would then use batch statistics); both paths end here.
        """
        super().__setstate__(state)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Tensor version of the reference transform (Resize(256), CenterCrop(224), Normalize).

        Args:
            images: (B, C, H, W) in [0, 1], C in {1, 3}; 1-channel images are repeated to
                3 channels like ``transforms.Grayscale(3)``.
        """
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected (B, 1|3, H, W) images, got {tuple(images.shape)}")
        x = images.to(self.mean.device, torch.float32)
        x = TF.resize(x, [256], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        x = TF.center_crop(x, [224, 224])
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return the layer1..layer4 maps, each (B, C_k, h_k, w_k), of ``images`` in [0, 1]."""
        feats = self.extractor(self.preprocess(images))
        return [feats[k] for k in LAYERS]

    def describe(self) -> dict[str, Any]:
        """Architecture and weights (with the checkpoint hash for a local file)."""
        return {"arch": self.arch, **self.record.describe()}
