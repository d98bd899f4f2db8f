"""Detection victims: torchvision's RetinaNet, FCOS and SSDlite with one class (``face`` for
face detectors, ``plate`` for license-plate localization: ``class_name`` only names it).

The detectors are torchvision's own (losses, box coding, post-processing included); this
module only builds them from a small classification backbone whose weights are chosen
explicitly (``imagenet | <path to a state_dict> | none``, never an implicit download) and
sized for the images (the detector's internal resize is set to the data's image size, so
a 128-pixel image is not blown up to torchvision's default 800).

Labels follow torchvision's convention: index 0 is background, the one class is 1, so
``num_classes = 2``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
import torchvision
from torch import nn
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import FCOS, RetinaNet
from torchvision.models.detection._utils import retrieve_out_channels
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import (
    SSDLiteHead,
    _mobilenet_extractor,
    _normal_init,
)
from torchvision.ops import misc as misc_ops
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from miabench.metrics.anonymization import AnonymizationMetric, image_anonymization_recall
from miabench.utils.extras import require_extra
from miabench.utils.pretrained import TorchvisionWeights, loads_imagenet
from miabench.utils.weights import build_with_weights
from miabench.victims.base import OptimizerFactory, Signals, Victim

FACE_LABEL = 1
NUM_CLASSES = 2  # background + face

# Layers whose training-mode behaviour changes state or adds noise; the loss signal runs
# them in eval mode (see `loss_mode`).
_STATEFUL = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)


def backbone_weights(backbone: str) -> TorchvisionWeights:
    """The ImageNet weights :func:`classifier_backbone` loads for the torchvision model
    ``backbone`` (its default; the detector builders' config key, hence the name)."""
    return TorchvisionWeights(backbone, "DEFAULT")


def classifier_backbone(arch: str, weights: str, **kwargs: Any) -> tuple[nn.Module, dict[str, str]]:
    """A torchvision classification network with explicitly chosen weights.

    Args:
        arch: torchvision model name, e.g. ``resnet18``, ``mobilenet_v3_large``.
        weights: ``imagenet`` (torchvision's default ImageNet weights; downloaded once if
            not cached), a path to a ``state_dict`` of the same architecture (loaded with
            ``weights_only``), or ``none`` (random init). Nothing is downloaded for a path
            or ``none``.
        **kwargs: passed to the model builder (e.g. ``norm_layer``).

    Returns:
        ``(model, info)``; ``info["weights"]`` says which weights were used
        (``none``, ``imagenet:<enum>``, ``file:<path>``, with ``weights_sha256`` for a file),
        recorded by :meth:`DetectionVictim.describe`.

    Raises:
        FileNotFoundError: ``weights`` is neither keyword nor an existing file.
        ValueError: the file does not hold weights of ``arch``.
    """
    enum = torchvision.models.get_model_weights(arch).DEFAULT
    model, record = build_with_weights(
        weights,
        lambda pretrained: torchvision.models.get_model(
            arch, weights=enum if pretrained else None, **kwargs
        ),
        what=f"torchvision's {arch}",
        imagenet=backbone_weights(arch).name,
    )
    info = record.describe()
    if record.path is not None:
        info["weights"] = f"file:{record.path}"
    elif record.weights == "imagenet":
        info["weights"] = f"imagenet:{enum}"
    return model, info


def _resnet_fpn(arch: str, weights: str, trainable_layers: int) -> tuple[nn.Module, dict[str, str]]:
    """ResNet + FPN (P3–P7), as torchvision's RetinaNet and FCOS use."""
    # torchvision freezes BatchNorm when fine-tuning pretrained weights and trains it from
    # scratch otherwise; do the same.
    norm = nn.BatchNorm2d if weights == "none" else misc_ops.FrozenBatchNorm2d
    body, weights_info = classifier_backbone(arch, weights, norm_layer=norm)
    # torchvision has no public builder taking an already-built ResNet (resnet_fpn_backbone
    # would download by enum only), hence its extractor helper.
    backbone = _resnet_fpn_extractor(
        body, trainable_layers, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)
    )
    return backbone, weights_info


def _info(model: nn.Module, **info: Any) -> nn.Module:
    # Read back by DetectionVictim.describe(): which backbone and weights shaped the model.
    model.backbone_info = info
    return model


@loads_imagenet(backbone_weights)
def build_retinanet(
    image_size: int,
    backbone: str = "resnet18",
    weights: str = "imagenet",
    trainable_layers: int = 5,
    anchor_base_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    score_thresh: float = 0.01,
    detections_per_img: int = 100,
) -> RetinaNet:
    """torchvision RetinaNet (focal loss, smooth-L1 box regression) on a ResNet-FPN.

    Args:
        image_size: side of the (square) input images; the detector does not resize them.
        backbone: torchvision ResNet name.
        weights: backbone weights, see :func:`classifier_backbone`.
        trainable_layers: ResNet stages trained (5 = all, needed without pretraining).
        anchor_base_sizes: anchor side at P3..P7 (each with scales 2^0, 2^1/3, 2^2/3 as in
            torchvision); torchvision's defaults start at 32, too large for small faces.
        aspect_ratios: anchor aspect ratios.
        score_thresh: lowest score kept by post-processing (low, so mAP sees the tail).
        detections_per_img: detections kept per image.
    """
    fpn, weights_info = _resnet_fpn(backbone, weights, trainable_layers)
    sizes = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in anchor_base_sizes)
    anchors = AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(sizes))
    model = RetinaNet(
        fpn,
        NUM_CLASSES,
        min_size=image_size,
        max_size=image_size,
        anchor_generator=anchors,
        score_thresh=score_thresh,
        detections_per_img=detections_per_img,
    )
    return _info(model, detector="retinanet", backbone=backbone, **weights_info)


@loads_imagenet(backbone_weights)
def build_fcos(
    image_size: int,
    backbone: str = "resnet18",
    weights: str = "imagenet",
    trainable_layers: int = 5,
    score_thresh: float = 0.01,
    detections_per_img: int = 100,
) -> FCOS:
    """torchvision FCOS (anchor-free: focal loss, GIoU box loss, centerness) on a ResNet-FPN.

    Args:
        image_size: side of the (square) input images; the detector does not resize them.
        backbone: torchvision ResNet name.
        weights: backbone weights, see :func:`classifier_backbone`.
        trainable_layers: ResNet stages trained (5 = all).
        score_thresh: lowest score kept by post-processing.
        detections_per_img: detections kept per image.
    """
    fpn, weights_info = _resnet_fpn(backbone, weights, trainable_layers)
    model = FCOS(
        fpn,
        NUM_CLASSES,
        min_size=image_size,
        max_size=image_size,
        score_thresh=score_thresh,
        detections_per_img=detections_per_img,
    )
    return _info(model, detector="fcos", backbone=backbone, **weights_info)


@loads_imagenet(backbone_weights)
def build_ssdlite(
    image_size: int,
    backbone: str = "mobilenet_v3_large",
    weights: str = "imagenet",
    width_mult: float = 1.0,
    trainable_layers: int = 6,
    score_thresh: float = 0.01,
    detections_per_img: int = 100,
) -> SSD:
    """torchvision SSDlite on MobileNetV3, as ``ssdlite320_mobilenet_v3_large`` builds it,
    at ``image_size`` instead of 320 and with an explicit backbone.

    Args:
        image_size: side of the (square) input images.
        backbone: ``mobilenet_v3_large`` or ``mobilenet_v3_small``.
        weights: backbone weights, see :func:`classifier_backbone`; ``none`` uses the reduced
            tail and normal init as torchvision does without pretraining (a weights file must
            then come from the full-tail classifier).
        width_mult: MobileNet width multiplier (< 1 for tiny CPU models; ``none`` only, as
            ImageNet weights exist for 1.0).
        trainable_layers: MobileNet stages trained (6 = all).
        score_thresh: lowest score kept by post-processing.
        detections_per_img: detections kept per image.
    """
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    pretrained = weights != "none"
    body, weights_info = classifier_backbone(
        backbone, weights, norm_layer=norm, reduced_tail=not pretrained, width_mult=width_mult
    )
    if not pretrained:
        _normal_init(body)
    # torchvision builds SSDlite only at 320 px from a weights enum; its extractor helper is
    # the one way to reuse the architecture at another size with our own backbone weights.
    features = _mobilenet_extractor(body, trainable_layers, norm)
    size = (image_size, image_size)
    anchors = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    out_channels = retrieve_out_channels(features, size)
    model = SSD(
        features,
        anchors,
        size,
        NUM_CLASSES,
        head=SSDLiteHead(out_channels, anchors.num_anchors_per_location(), NUM_CLASSES, norm),
        score_thresh=score_thresh,
        nms_thresh=0.55,
        detections_per_img=detections_per_img,
        topk_candidates=300,
        # ssdlite320's normalisation: [0, 1] → [-1, 1]
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return _info(
        model, detector="ssdlite", backbone=backbone, **weights_info, width_mult=width_mult
    )


@contextmanager
def loss_mode(model: nn.Module) -> Iterator[None]:
    """Training-mode forward (so torchvision detectors return their losses) that changes
    nothing: BatchNorm uses and keeps its running statistics, dropout is off.

    Call it under ``torch.no_grad()``; every module's mode is restored on exit.
    """
    modes = {m: m.training for m in model.modules()}
    model.train()
    for module in model.modules():
        if isinstance(module, _STATEFUL):
            module.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.train(training)


class MeanAveragePrecisionValue(MeanAveragePrecision):
    """torchmetrics' COCO mAP, computing one of its values (``map``, ``map_50``, ...).

    The pipeline stores one number per utility metric; ``MeanAveragePrecision`` computes a
    dictionary.
    """

    def __init__(self, key: str = "map", **kwargs: Any) -> None:
        require_extra("detection")  # torchmetrics' own message names another package
        super().__init__(**kwargs)
        self.key = key

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        return super().compute()[self.key]


class DetectionVictim(Victim):
    """A torchvision detector trained to find one class of objects (faces, plates), with
    Lightning's automatic optimisation.

    Batches are :func:`miabench.data.wider_face.collate` dicts: ``input`` (B, 3, S, S) in
    [0, 1], ``boxes`` and ``ignore`` (lists of per-image tensors). Faces marked ``ignore``
    are not trained on; mAP treats them as ``iscrowd`` regions.

    Signals (see :attr:`provides`):

    - ``input``: the images; ``boxes`` / ``ignore``: the ground truth, per image.
    - ``loss`` (B,): the detector's training loss on each image alone (sum of its terms),
      computed in training mode without changing anything (:func:`loss_mode`);
      ``loss_terms``: ``{term: (B,)}``, the detector's own terms (``classification``,
      ``bbox_regression``, plus ``bbox_ctrness`` for FCOS).
    - ``detections``: per image ``{"boxes": (n, 4), "scores": (n,)}`` after post-processing
      (score ≥ the detector's ``score_thresh``, NMS), sorted by score.

    Args:
        detector: a torchvision detection model (e.g. from :func:`build_retinanet`).
        optimizer: partial optimiser, called with the trainable parameters.
        deployment_threshold: the score from which a deployed anonymizer masks a box; the
            utility at that threshold (precision, recall, anonymization recall) uses it.
        class_name: what the one class is (``face``, ``plate``); recorded by
            :meth:`describe`, it changes nothing else.
    """

    provides = ("sample_id", "input", "boxes", "ignore", "loss", "loss_terms", "detections")

    def __init__(
        self,
        detector: nn.Module,
        optimizer: OptimizerFactory,
        deployment_threshold: float = 0.5,
        class_name: str = "face",
    ) -> None:
        super().__init__()
        self.detector = detector
        self._optimizer = optimizer
        self.deployment_threshold = deployment_threshold
        self.class_name = class_name

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Detections for a batch of images in [0, 1] (eval mode: call ``.eval()`` first)."""
        return self.detector(list(images))

    @staticmethod
    def targets(batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
        """torchvision training targets: the faces not marked ``ignore``, label ``face``."""
        out = []
        for boxes, ignore in zip(batch["boxes"], batch["ignore"], strict=True):
            kept = boxes[~ignore].reshape(-1, 4).float()
            labels = torch.full((len(kept),), FACE_LABEL, dtype=torch.int64, device=kept.device)
            out.append({"boxes": kept, "labels": labels})
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.detector(list(batch["input"]), self.targets(batch))
        loss = sum(losses.values())
        n = len(batch["sample_id"])
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=n)
        self.log_dict(
            {f"train/{k}": v for k, v in losses.items()}, on_step=False, on_epoch=True, batch_size=n
        )
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Frozen backbone stages (trainable_layers < all) have requires_grad False.
        return self._optimizer(params=[p for p in self.parameters() if p.requires_grad])

    @torch.no_grad()
    def per_image_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The detector's training loss terms on each image alone: ``{term: (B,)}``.

        torchvision averages its losses over a batch, so each image goes through on its own.
        """
        terms: dict[str, list[torch.Tensor]] = {}
        with loss_mode(self.detector):
            for image, target in zip(batch["input"], self.targets(batch), strict=True):
                for name, value in self.detector([image], [target]).items():
                    terms.setdefault(name, []).append(value.detach().float())
        return {name: torch.stack(values) for name, values in terms.items()}

    def signal_step(self, batch: dict[str, Any]) -> Signals:
        device = batch["input"].device
        # iter_signals moves tensors only; the per-image box lists come here as they were.
        batch = {
            **batch,
            "boxes": [b.to(device) for b in batch["boxes"]],
            "ignore": [i.to(device) for i in batch["ignore"]],
        }
        terms = self.per_image_losses(batch)
        detections = self.query(batch["input"])["detections"]
        return {
            "sample_id": list(batch["sample_id"]),
            "input": batch["input"],
            "boxes": batch["boxes"],
            "ignore": batch["ignore"],
            "loss": sum(terms.values()),
            "loss_terms": terms,
            "detections": detections,
        }

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> Signals:
        """``detections``: per image ``{"boxes": (n, 4), "scores": (n,)}`` after
        post-processing (eval mode: in training mode a torchvision detector returns losses)."""
        was_training = self.detector.training
        self.detector.eval()
        try:
            detections = self.detector(list(images))
        finally:
            self.detector.train(was_training)
        return {"detections": [{"boxes": d["boxes"], "scores": d["scores"]} for d in detections]}

    def utility(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Per-image training ``loss`` (also what early stopping watches as ``val/loss``) and
        ``anonymization_recall``: the share of the image's true-box pixels that the boxes at
        the deployment threshold cover (1 without faces)."""
        height, width = signals["input"].shape[-2:]
        recall = [
            image_anonymization_recall(
                det["boxes"][det["scores"] >= self.deployment_threshold],
                boxes[~ignore],
                height,
                width,
            )
            for det, boxes, ignore in zip(
                signals["detections"], signals["boxes"], signals["ignore"], strict=True
            )
        ]
        return {
            "loss": signals["loss"],
            "anonymization_recall": torch.tensor(recall, dtype=torch.float64),
        }

    def utility_metrics(self) -> dict[str, Metric]:
        """COCO mAP@[.5:.95] (``map``) and mAP@0.5 (``map_50``) over a role's images, and at
        the deployment threshold the ``precision`` and ``recall`` of the boxes (IoU ≥ 0.5)
        and the ``dataset_anonymization_recall`` (covered / all true-box pixels)."""
        at = partial(AnonymizationMetric, score_threshold=self.deployment_threshold)
        return {
            "map": MeanAveragePrecisionValue("map", box_format="xyxy", iou_type="bbox"),
            "map_50": MeanAveragePrecisionValue("map_50", box_format="xyxy", iou_type="bbox"),
            "precision": at("precision"),
            "recall": at("recall"),
            "dataset_anonymization_recall": at("anonymization_recall"),
        }

    def update_utility_metrics(self, metrics: dict[str, Metric], signals: Signals) -> None:
        preds, target = [], []
        for det, boxes, ignore in zip(
            signals["detections"], signals["boxes"], signals["ignore"], strict=True
        ):
            face = partial(torch.full, fill_value=FACE_LABEL, dtype=torch.int64)
            preds.append(
                {
                    "boxes": det["boxes"],
                    "scores": det["scores"],
                    "labels": face((len(det["boxes"]),), device=det["boxes"].device),
                }
            )
            target.append(
                {
                    "boxes": boxes,
                    "labels": face((len(boxes),), device=boxes.device),
                    "iscrowd": ignore.long(),
                }
            )
        size = tuple(signals["input"].shape[-2:])
        for metric in metrics.values():
            if isinstance(metric, AnonymizationMetric):
                metric.update(preds, target, size)
            else:
                metric.update(preds, target)

    def describe(self) -> dict[str, Any]:
        info = dict(getattr(self.detector, "backbone_info", {}))
        info["detector_class"] = type(self.detector).__qualname__
        info["class_name"] = self.class_name
        info["parameters"] = sum(p.numel() for p in self.detector.parameters())
        return info
