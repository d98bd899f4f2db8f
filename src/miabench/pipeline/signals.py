"""Signal stage: one pass of a victim over its population, per-sample signals cached on disk.

Reference-model attacks (LiRA, RMIA, ...) compare a sample's signal under the target with the
same signal under many reference models, so every model's signals are computed once, over
the whole population (its members and non-members), and cached as one ``.npz`` per model.
The attacks then read a stacked samples x models array (:func:`stack_signals`) and never run
a victim again.

What a signal is depends on the victim family; ``reference.signals.compute`` names a function
``(signals) -> {name: (B,) or (B, P) tensor}`` of the victim's signal dictionaries
(:func:`image_translation_signals`, :func:`segmentation_signals`,
:func:`detection_signals`), chosen by config (``conf/reference/signals/``).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig

from miabench.attacks.reconstruction import reconstruction_error
from miabench.attacks.segmentation import segmentation_error
from miabench.defenses.setting import DefenseSetting
from miabench.pipeline.code_hash import module_closure, target_modules
from miabench.pipeline.train import TrainedVictim
from miabench.utils.config import to_container
from miabench.utils.hashing import stable_hash
from miabench.utils.io import atomic_write, verified_exists
from miabench.victims.base import Signals, Victim

log = logging.getLogger(__name__)

#: Per-batch signal function: victim signals -> {name: (B,) or (B, P) tensor}.
SignalFn = Callable[[Signals], dict[str, torch.Tensor]]


# --------------------------------------------------------------------------- signal functions


def _patch_means(values: torch.Tensor, weight: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, H, W) per-pixel values -> (B, grid*grid) weighted means over a grid of patches.

    ``adaptive_avg_pool2d`` cuts any H, W into ``grid`` near-equal bands, so images whose side
    is not a multiple of ``grid`` still give one value per patch; a patch without weight
    (all pixels unlabelled) is 0.
    """
    if grid < 1:
        raise ValueError(f"reference.signals grid must be >= 1, got {grid}")
    total = F.adaptive_avg_pool2d((values * weight)[:, None], grid)
    mass = F.adaptive_avg_pool2d(weight[:, None], grid)
    return (total / mass.clamp_min(1e-12)).flatten(1)


def image_translation_signals(
    signals: Signals, quantize: bool = True, grid: int = 8
) -> dict[str, torch.Tensor]:
    """Signals of an image-translation victim (pix2pix, pix2pixHD, SPADE, ...).

    Args:
        signals: the victim's ``output`` and ``target`` (B, C, H, W) in [0, 1].
        quantize: truncate the output to 8-bit levels first, as the reconstruction attack
            (:func:`~miabench.attacks.reconstruction.reconstruction_error`) does.
        grid: side of the patch grid of ``loss_map``.

    Returns:
        ``loss`` (B,): the reconstruction attack's mean L1 error; ``loss_map``
        (B, grid*grid): the same mean L1 per patch (its mean over patches is ``loss`` when
        the side is a multiple of ``grid``).
    """
    output, target = signals["output"], signals["target"]
    loss = reconstruction_error(output, target, quantize)
    out = output.to(torch.float64)
    if quantize:
        out = torch.floor(out.clamp(0.0, 1.0) * 255.0) / 255.0
    per_pixel = (out - target.to(torch.float64)).abs().mean(1)
    return {"loss": loss, "loss_map": _patch_means(per_pixel, torch.ones_like(per_pixel), grid)}


def _true_class_probability(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) probability the output gives the true label (foreground or not if binary)."""
    p = output.to(torch.float64)
    if p.shape[1] == 1:
        return torch.where(labels == 1, p[:, 0], 1.0 - p[:, 0])
    return p.gather(1, labels.unsqueeze(1)).squeeze(1)


def segmentation_signals(
    signals: Signals, ignore_index: int = 255, grid: int = 8, eps: float = 1e-7
) -> dict[str, torch.Tensor]:
    """Signals of a segmentation victim (class probabilities against a label map).

    Args:
        signals: the victim's ``output`` (B, K, H, W) probabilities (or (B, 1, H, W)
            foreground probability) and ``target`` (B, H, W) labels.
        ignore_index: label of unlabelled pixels (left out everywhere).
        grid: side of the patch grid of ``loss_map``.
        eps: probabilities are clamped to [eps, 1 - eps] before the log, as the victim's
            ``pixel_loss`` does.

    Returns:
        ``loss`` (B,): mean per-pixel cross-entropy (the segmentation reconstruction
        attack's error); ``confidence`` (B,): mean probability of the true class;
        ``loss_map`` (B, grid*grid): mean cross-entropy per patch.
    """
    output, target = signals["output"], signals["target"]
    loss = segmentation_error(output, target, "loss", ignore_index)
    valid = (target != ignore_index).to(torch.float64)
    labels = torch.where(target == ignore_index, 0, target)
    prob = _true_class_probability(output, labels).clamp(eps, 1.0 - eps)
    confidence = (prob * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1.0)
    return {
        "loss": loss,
        "confidence": confidence,
        "loss_map": _patch_means(-prob.log(), valid, grid),
    }


def detection_signals(signals: Signals) -> dict[str, torch.Tensor]:
    """Signals of a detection victim (its ``signal_step`` computes the per-image loss).

    Returns:
        ``loss`` (B,): the detector's training loss on each image alone; ``confidence``
        (B,): the highest detection score (0 when nothing is detected).
    """
    confidence = torch.stack(
        [
            d["scores"].max().to(torch.float64)
            if len(d["scores"])
            else torch.zeros((), dtype=torch.float64, device=d["scores"].device)
            for d in signals["detections"]
        ]
    )
    return {"loss": signals["loss"].to(torch.float64), "confidence": confidence}


# --------------------------------------------------------------------------- cached stage


def signal_key(cfg: DictConfig, victim: TrainedVictim) -> dict[str, Any]:
    """Everything that shapes a model's cached signals, and its hash under ``key``.

    The victim key (weights, data, split), the signal config, the attacker view the signals
    are computed through, and the source of the signal code and of the view (the modules
    their ``_target_``s name and every ``miabench`` module those import): editing the
    quantiser of ``defense=output_truncation`` gives new signals, never stale ones.
    """
    spec = to_container(cfg.reference.signals.compute)
    view = DefenseSetting.of(cfg).attacker_view_spec
    parts = {
        "victim": victim.key["key"],
        "signals": spec,
        "attacker_view": view,
        "code": module_closure(target_modules({"signals": spec, "view": view})),
    }
    parts["key"] = stable_hash(parts)
    return parts


def signal_path(cfg: DictConfig, victim: TrainedVictim) -> Path:
    """Cache file of one model's signals: ``<cache>/signals/<victim dir>-<signal key>.npz``."""
    key = signal_key(cfg, victim)["key"]
    return Path(cfg.paths.cache_dir) / "signals" / f"{victim.directory.name}-{key}.npz"


def compute_signals(cfg: DictConfig, victim: TrainedVictim, device: torch.device) -> Path:
    """One pass of ``victim`` over its members and non-members; the signals cached on disk.

    Args:
        cfg: the model's config (``reference.signals.compute``, ``defense.attacker_view``).
        victim: the trained victim (its data module serves the population); loaded only
            when its signals are not cached yet.
        device: where to run it.

    Returns:
        Path of the ``.npz``: ``sample_id`` plus one array per signal, rows sorted by id,
        and ``meta`` (JSON: the signal key). An existing file is reused.
    """
    path = signal_path(cfg, victim)
    if verified_exists(path):  # a damaged cache file is named, removed and recomputed
        log.info("reusing signals %s", path)
        return path
    fn: SignalFn = instantiate(cfg.reference.signals.compute)
    view = DefenseSetting.of(cfg).attacker_view()
    model: Victim = victim.load(cfg)
    dm = victim.datamodule
    ids: list[str] = []
    columns: dict[str, list[np.ndarray]] = {}
    for role, loader in (
        ("member", dm.member_dataloader()),
        ("nonmember", dm.nonmember_dataloader()),
    ):
        for signals in model.iter_signals(loader, device=device, desc=f"signals [{role}]"):
            if view is not None:
                signals = view(signals)
            ids += list(signals["sample_id"])
            for name, value in fn(signals).items():
                # float32 halves the cache; LiRA's Gaussians need no more precision
                columns.setdefault(name, []).append(value.detach().cpu().float().numpy())
    order = np.argsort(np.array(ids))
    arrays = {name: np.concatenate(parts)[order] for name, parts in columns.items()}
    meta = json.dumps(signal_key(cfg, victim) | {"code": None}, sort_keys=True)

    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, sample_id=np.array(ids)[order], meta=np.array(meta), **arrays)
        tmp.write_bytes(buffer.getvalue())

    atomic_write(path, write, checksum=True)
    log.info("signals of %s → %s", victim.directory.name, path)
    return path


@dataclass
class StackedSignals:
    """Signals of K models over one population: ``values[name]`` is (N, K) or (N, P, K)."""

    sample_ids: list[str]
    values: dict[str, np.ndarray]


def stack_signals(paths: Sequence[Path], sample_ids: Sequence[str]) -> StackedSignals:
    """Read each model's cached signals and stack them with the models on the last axis.

    Args:
        paths: one ``.npz`` per model, in model order.
        sample_ids: the population in matrix row order.

    Raises:
        ValueError: naming the file, when it does not hold exactly the population's samples
            or the models disagree on which signals exist.
    """
    sample_ids = list(sample_ids)
    stacked: dict[str, list[np.ndarray]] = {}
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            ids = [str(s) for s in data["sample_id"]]
            if sorted(ids) != sorted(sample_ids):
                raise ValueError(
                    f"{path} holds signals of {len(ids)} samples that are not the "
                    f"population's {len(sample_ids)}; remove it to recompute"
                )
            row = {sid: i for i, sid in enumerate(ids)}
            take = np.array([row[s] for s in sample_ids])
            names = [n for n in data.files if n not in ("sample_id", "meta")]
            if stacked and sorted(names) != sorted(stacked):
                raise ValueError(f"{path} has signals {names}, other models {sorted(stacked)}")
            for name in names:
                stacked.setdefault(name, []).append(data[name][take].astype(np.float64))
    return StackedSignals(sample_ids, {n: np.stack(v, axis=-1) for n, v in stacked.items()})
