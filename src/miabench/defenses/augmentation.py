"""Paired data augmentation: the same random geometric transform for input and target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from miabench.defenses.base import Defense, MappedDataset, WrappedDataModule, loader_like


class PairedTransform:
    """Apply a torchvision v2 transform to an item's ``input`` and ``target`` jointly.

    The input is wrapped as :class:`tv_tensors.Image`; a floating-point target as an
    ``Image`` too (image translation) and an integer target as a :class:`tv_tensors.Mask`
    (segmentation: nearest-neighbour resampling, never blended labels). v2 transforms draw
    their random parameters once per call, so both receive the same crop, flip and rotation.
    Other keys (``sample_id``) pass through unchanged.
    """

    def __init__(self, transform: Callable[..., Any]) -> None:
        self.transform = transform

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        target = item["target"]
        wrap = tv_tensors.Image if torch.is_floating_point(target) else tv_tensors.Mask
        image, target = self.transform(tv_tensors.Image(item["input"]), wrap(target))
        return {
            **item,
            "input": image.as_subclass(torch.Tensor),
            "target": target.as_subclass(torch.Tensor),
        }


class Augmentation(Defense):
    """Extra paired augmentation of the members during training (only the training loader).

    Args:
        transform: a torchvision v2 transform (e.g. ``v2.Compose([v2.RandomResizedCrop(...),
            v2.RandomHorizontalFlip(), v2.RandomRotation(10)])``) applied after the
            dataset's own preprocessing. Photometric transforms would also alter an image
            target (the ground truth), so configs use geometric ones.
    """

    name = "augmentation"

    def __init__(self, transform: Callable[..., Any]) -> None:
        self.transform = transform
        self.paired = PairedTransform(transform)

    def prepare_datamodule(self, datamodule: Any) -> Any:
        def augmented(loader: DataLoader) -> DataLoader:
            return loader_like(loader, MappedDataset(loader.dataset, self.paired))

        return WrappedDataModule(datamodule, augmented)

    def report(self) -> dict[str, Any]:
        return {"transform": repr(self.transform)}
