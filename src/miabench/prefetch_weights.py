"""Fill the torch hub and Hugging Face caches with every ImageNet backbone the configs can use.

    python -m miabench.prefetch_weights            # on a login node (with internet)
    python -m miabench.prefetch_weights --list

Afterwards ``weights=imagenet`` loads from the caches on compute nodes without internet. The
names are the ones the weights loader (:mod:`miabench.utils.weights`) gives in its offline
message, so ``--only <name>`` fetches exactly what a failed run asked for. The list is
derived from the configs: every network a config's ``_target_`` names declares which
weights it loads (:mod:`miabench.utils.pretrained`).
The caches are the libraries' own: torchvision's ``$TORCH_HOME/hub/checkpoints`` (default
``~/.cache/torch``) and, for timm and segmentation-models-pytorch, the Hugging Face hub cache
(``$HF_HOME/hub``, default ``~/.cache/huggingface``). Point both variables at a shared
file system to prefetch once for a cluster; on compute nodes also set ``HF_HUB_OFFLINE=1`` so
the hub does not try the network first.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from miabench.utils.config import composed_experiments, conf_dir, group_options
from miabench.utils.pretrained import Pretrained, Unresolved, declared_weights


@dataclass(frozen=True)
class Backbone:
    """ImageNet weights some config can ask for, and which configs.

    Attributes:
        weights: the library's entry (its prefetch name and how to fetch it).
        used_by: the configs whose targets load them (``victim=ssdlite``,
            ``experiment=embedded/face_area_deeplabv3plus``), sorted.
    """

    weights: Pretrained
    used_by: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.weights.name

    def fetch(self) -> Path:
        return self.weights.fetch()

    def where(self) -> str:
        """The config groups naming it; experiments only where nothing else does."""
        own = [u for u in self.used_by if not u.startswith("experiment=")]
        shown = own or list(self.used_by)
        return ", ".join(shown[:4]) + (f" (+{len(shown) - 4})" if len(shown) > 4 else "")


def _targets(node: Any) -> Iterator[tuple[Any, DictConfig]]:
    """Every ``(target, node)`` of a config tree whose ``_target_`` imports."""
    if not isinstance(node, (DictConfig, ListConfig)) or node._is_none():
        return
    if node._is_missing() or node._is_interpolation():
        return  # `???`, or a node copied from elsewhere (read where it is written)
    if isinstance(node, DictConfig):
        target = node._get_node("_target_") if "_target_" in node else None
        name = None if target is None else target._value()
        if isinstance(name, str) and "${" not in name:
            try:
                yield get_object(name), node
            except Exception:  # noqa: S110 - a target of another package (torch.optim...) or
                pass  # one the configs' own tests check; only declared loaders matter here
        for key in node:
            yield from _targets(node._get_node(key))
    else:
        for i in range(len(node)):
            yield from _targets(node._get_node(i))


def backbones_in(configs: Iterable[tuple[str, Any]]) -> tuple[Backbone, ...]:
    """The ImageNet weights the config targets declare (``loads_imagenet`` in
    :mod:`miabench.utils.pretrained`), with the configs using each, sorted by name.

    Args:
        configs: ``(label, config)`` pairs: a config file read alone or a composed config.
            A declared key left to an interpolation that does not resolve there (a file read
            alone) is skipped: the config it points to is read too.
    """
    found: dict[Pretrained, set[str]] = {}
    for label, cfg in configs:
        for target, node in _targets(
            OmegaConf.create(cfg) if not OmegaConf.is_config(cfg) else cfg
        ):
            try:
                entries = declared_weights(target, node)
            except Unresolved:
                continue
            for entry in entries:
                found.setdefault(entry, set()).add(label)
    return tuple(
        sorted((Backbone(w, tuple(sorted(u))) for w, u in found.items()), key=lambda b: b.name)
    )


def _package_configs() -> Iterator[tuple[str, Any]]:
    """Every victim and attack config as written, and every experiment composed."""
    for group in ("victim", "attack"):
        for option in group_options(group):
            yield f"{group}={option}", OmegaConf.load(conf_dir() / group / f"{option}.yaml")
    for name, cfg in composed_experiments().items():
        yield f"experiment={name}", cfg


@functools.cache
def backbones() -> tuple[Backbone, ...]:
    """Every backbone a config can ask ``weights: imagenet`` for, derived from conf/: a new
    config using a declared loader is listed without touching this file."""
    return backbones_in(_package_configs())


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
    # composing every experiment takes a while (about 15 s on 2 cores): say so first
    print("[prefetch_weights] reading the backbones every config names...", file=sys.stderr)
    chosen = [b for b in backbones() if not args.only or b.name in args.only]
    if args.only and len(chosen) != len(set(args.only)):
        unknown = sorted(set(args.only) - {b.name for b in backbones()})
        parser.error(f"unknown backbone(s) {unknown}; see --list")
    if args.list:
        for b in backbones():
            print(f"{b.name:42s} {b.where()}")
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
