"""Fill the torch hub and Hugging Face caches with every ImageNet backbone the configs can use.

    python -m miabench.prefetch_weights            # on a login node (with internet)
    python -m miabench.prefetch_weights --list

Afterwards ``weights=imagenet`` loads from the caches on compute nodes without internet. The
names are the ones the weights loader (:mod:`miabench.utils.weights`) gives in its offline
message, so ``--only <name>`` fetches exactly what a failed run asked for.
The caches are the libraries' own: torchvision's ``$TORCH_HOME/hub/checkpoints`` (default
``~/.cache/torch``) and, for timm and segmentation-models-pytorch, the Hugging Face hub cache
(``$HF_HOME/hub``, default ``~/.cache/huggingface``). Point both variables at a shared
file system to prefetch once for a cluster; on compute nodes also set ``HF_HUB_OFFLINE=1`` so
the hub does not try the network first.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from miabench.utils.weights import smp_name, timm_name, torchvision_name


@dataclass(frozen=True)
class TorchvisionWeights:
    """torchvision classification weights, as ``torchvision.models.get_model`` loads them.

    Args:
        arch: torchvision model name.
        tag: the weights enum member (``IMAGENET1K_V1``, ``DEFAULT``) the loader asks for.
        used_by: where the configs use it (shown by ``--list``).
    """

    arch: str
    tag: str
    used_by: str

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
    used_by: str

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
    used_by: str

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


#: Every backbone a config can ask ``weights: imagenet`` for (tests/test_prefetch_weights.py
#: checks that each arch/backbone/encoder named in miabench/conf/ is here).
BACKBONES = (
    TorchvisionWeights("wide_resnet50_2", "IMAGENET1K_V1", "attack.*.weights (predictability)"),
    TorchvisionWeights("resnet18", "IMAGENET1K_V1", "attack arch=resnet18 (defenses experiment)"),
    TorchvisionWeights("resnet18", "DEFAULT", "victim=retinanet, victim=fcos"),
    TorchvisionWeights("mobilenet_v3_large", "DEFAULT", "victim=ssdlite"),
    TorchvisionWeights("vgg19", "IMAGENET1K_V1", "victim=pix2pixhd, victim=spade (VGG loss)"),
    TimmWeights("hrnet_w18", "victim=hrnetv2_w18"),
    TimmWeights("hrnet_w48", "victim=hrnetv2_w48"),
    TimmWeights("res2net50_26w_4s", "victim=pranet, victim=infnet"),
    TimmWeights("resnet18", "victim=resnet18 (classifier)"),
    SmpEncoderWeights("resnet34", "victim=unet_smp"),
    SmpEncoderWeights("resnet50", "victim=upernet50, victim=deeplabv3plus"),
    SmpEncoderWeights("resnet101", "victim=upernet101"),
)


def main(argv: list[str] | None = None) -> int:
    """Command line entry; returns 1 when some download failed (each failure is printed)."""
    parser = argparse.ArgumentParser(
        prog="python -m miabench.prefetch_weights", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--list", action="store_true", help="list the backbones and exit")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="names from --list (default: all)"
    )
    args = parser.parse_args(argv)
    chosen = [b for b in BACKBONES if not args.only or b.name in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        unknown = sorted(set(args.only) - {b.name for b in BACKBONES})
        parser.error(f"unknown backbone(s) {unknown}; see --list")
    if args.list:
        for b in BACKBONES:
            print(f"{b.name:42s} {b.used_by}")
        return 0
    failed = 0
    for b in chosen:
        try:
            where = b.fetch()
        except Exception as err:  # report every backbone, then fail once at the end
            failed += 1
            print(f"[prefetch_weights] FAILED {b.name}: {type(err).__name__}: {err}")
            continue
        print(f"[prefetch_weights] {b.name} → {where}")
    print(f"[prefetch_weights] {len(chosen) - failed}/{len(chosen)} cached")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
