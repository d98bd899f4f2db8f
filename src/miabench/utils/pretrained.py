"""Which ImageNet weights a config can ask for, declared once beside the code that loads them.

Three libraries hold the backbones miabench builds with ``weights: imagenet``: torchvision
(an enum member of a model's weights), timm (a model's default pretrained tag, from the
Hugging Face hub) and segmentation-models-pytorch (an encoder's ``imagenet`` weights). One
frozen entry per library names the weights (:attr:`name`, the name the offline message and
``python -m miabench.prefetch_weights --only`` use) and fetches them into the library's own
cache (:meth:`fetch`).

A config target that loads ImageNet weights says which, as a function of its own config
keys (the function's parameter names), with :func:`loads_imagenet`::

    @loads_imagenet(backbone_weights)  # backbone_weights(backbone) -> TorchvisionWeights
    def build_fcos(image_size, backbone="resnet18", weights="imagenet", ...): ...

and builds with ``imagenet=<that entry>.name``, so what is declared is what is loaded.
:func:`declared_weights` reads the declaration for a config node; the prefetch list is
derived from every config that way (a new YAML is the only thing to add).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from miabench.utils.weights import smp_name, timm_name, torchvision_name


@dataclass(frozen=True)
class TorchvisionWeights:
    """torchvision classification weights, as ``torchvision.models.get_model`` loads them.

    Args:
        arch: torchvision model name.
        tag: the weights enum member (``IMAGENET1K_V1``, ``DEFAULT``) the loader asks for.
    """

    arch: str
    tag: str

    @property
    def name(self) -> str:
        return torchvision_name(self.arch, self.tag)

    def enum(self):  # noqa: ANN201 - a torchvision Weights enum member
        import torchvision  # noqa: PLC0415

        return getattr(torchvision.models.get_model_weights(self.arch), self.tag)

    def fetch(self) -> Path:
        """Download into torch hub's checkpoint folder (kept if present); return the file."""
        import torch  # noqa: PLC0415

        url = self.enum().url
        # check_hash: torchvision's file names carry the SHA-256 prefix, verified here
        torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)
        return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


@dataclass(frozen=True)
class TimmWeights:
    """timm's default pretrained weights of ``arch`` (from the Hugging Face hub)."""

    arch: str

    @property
    def name(self) -> str:
        return timm_name(self.arch)

    def fetch(self) -> Path:
        """Build the model with ``pretrained=True`` (timm downloads into the hub cache)."""
        import timm  # noqa: PLC0415
        from huggingface_hub import constants  # noqa: PLC0415

        timm.create_model(self.arch, pretrained=True)
        hub_id = timm.models.get_pretrained_cfg(self.arch).hf_hub_id
        return Path(constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"


@dataclass(frozen=True)
class SmpEncoderWeights:
    """segmentation-models-pytorch's ``imagenet`` encoder weights of ``encoder``."""

    encoder: str

    @property
    def name(self) -> str:
        return smp_name(self.encoder)

    def fetch(self) -> Path:
        """Build the encoder with ImageNet weights (smp downloads them into its cache)."""
        import segmentation_models_pytorch as smp  # noqa: PLC0415
        import torch  # noqa: PLC0415
        from huggingface_hub import constants  # noqa: PLC0415

        smp.encoders.get_encoder(self.encoder, weights="imagenet")
        settings = smp.encoders.encoders[self.encoder]["pretrained_settings"]["imagenet"]
        if "repo_id" in settings:  # smp >= 0.5: the Hugging Face hub
            return (
                Path(constants.HF_HUB_CACHE) / f"models--{settings['repo_id'].replace('/', '--')}"
            )
        return Path(torch.hub.get_dir()) / "checkpoints" / Path(settings["url"]).name


Pretrained = TorchvisionWeights | TimmWeights | SmpEncoderWeights

T = TypeVar("T")

#: the attribute :func:`loads_imagenet` sets on a config target
ATTRIBUTE = "imagenet_weights"


def loads_imagenet(declare: Callable[..., Pretrained | Iterable[Pretrained]]) -> Callable[[T], T]:
    """Declare which ImageNet weights a config target (class or function) loads.

    Args:
        declare: a function of some of the target's keyword arguments, by name (a config
            node's keys), returning the entry or entries it loads with ``weights: imagenet``.
            A key the node does not set takes the target's default.
    """

    def mark(target: T) -> T:
        setattr(target, ATTRIBUTE, declare)
        return target

    return mark


class Unresolved(LookupError):
    """A declared key's value is not known from this config alone (an interpolation)."""


def declared_weights(target: Any, node: Mapping[str, Any]) -> list[Pretrained]:
    """The ImageNet weights ``target`` declares for the config ``node`` (``[]``: none).

    Args:
        target: the class or function a node's ``_target_`` names.
        node: its keyword arguments (a config node; interpolations resolve on access).

    Raises:
        Unresolved: a key the declaration needs is an interpolation that does not resolve
            here (e.g. ``${attack.membership_error.arch}`` in a file read alone).
    """
    declare = getattr(target, ATTRIBUTE, None)
    if declare is None:
        return []
    defaults = inspect.signature(target).parameters
    kwargs = {}
    for key in inspect.signature(declare).parameters:
        if key not in node:
            value = defaults[key].default  # a KeyError here is a declaration naming no argument
        else:
            try:
                value = node[key]
            except Exception as err:  # OmegaConf's interpolation errors
                raise Unresolved(key) from err
        if value is inspect.Parameter.empty or (isinstance(value, str) and "${" in value):
            raise Unresolved(key)
        kwargs[key] = value
    out = declare(**kwargs)
    return [out] if isinstance(out, Pretrained) else list(out)
