"""Paired data augmentation: the same random geometric transform for an input and its ground
truth (target image, label map or boxes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from miabench.defenses.base import Defense, MappedDataset, WrappedDataModule, loader_like


class PairedTransform:
    """Apply a torchvision v2 transform to an item's input and its ground truth jointly.

    The input is wrapped as :class:`tv_tensors.Image`. The ground truth is, by layout:

    - ``target`` floating point (image translation): an ``Image`` too;
    - ``target`` integer (segmentation label map): a :class:`tv_tensors.Mask`, resampled
      nearest-neighbour (labels are never blended);
    - ``boxes`` (detection, xyxy pixels, with the per-box ``ignore`` flags): a
      :class:`tv_tensors.BoundingBoxes` on the input's canvas, so a flip mirrors the boxes,
      a crop shifts and rescales them and a rotation takes their enclosing box. Boxes pushed
      out of the picture (under one pixel wide or high once clamped) are dropped with their
      ``ignore`` flags, as ``v2.SanitizeBoundingBoxes`` would.

    v2 transforms draw their random parameters once per call, so the input and its ground
    truth receive the same crop, flip and rotation. Other keys (``sample_id``) pass through.
    """

    def __init__(self, transform: Callable[..., Any]) -> None:
        self.transform = transform

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        image = tv_tensors.Image(item["input"])
        if "boxes" in item:
            return {**item, **self._boxes(image, item)}
        if "target" not in item:
            raise KeyError(
                "defense=augmentation: an item needs a `target` (image or label map) or "
                f"`boxes` to transform with its input; it has {sorted(item)}"
            )
        target = item["target"]
        wrap = tv_tensors.Image if torch.is_floating_point(target) else tv_tensors.Mask
        image, target = self.transform(image, wrap(target))
        return {
            **item,
            "input": image.as_subclass(torch.Tensor),
            "target": target.as_subclass(torch.Tensor),
        }

    def _boxes(self, image: tv_tensors.Image, item: dict[str, Any]) -> dict[str, Any]:
        boxes = tv_tensors.BoundingBoxes(
            item["boxes"].reshape(-1, 4),
            format=tv_tensors.BoundingBoxFormat.XYXY,
            canvas_size=tuple(image.shape[-2:]),
        )
        image, boxes = self.transform(image, boxes)
        boxes = F.clamp_bounding_boxes(boxes).as_subclass(torch.Tensor)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        out = {"input": image.as_subclass(torch.Tensor), "boxes": boxes[keep]}
        if "ignore" in item:
            out["ignore"] = item["ignore"][keep]
        return out


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
