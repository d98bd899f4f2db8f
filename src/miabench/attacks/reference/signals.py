"""Per-sample signals of each victim family, as the reference attacks read them.

Reference-model attacks (LiRA, RMIA, ...) compare a sample's signal under the target with the
same signal under many reference models. What a signal is depends on the victim family:
``reference.signals.compute`` (``conf/reference/signals/<family>.yaml``) names one of these
functions ``(signals) -> {name: (B,) or (B, P) tensor}`` of the victim's signal bundle, and
the signal stage (:mod:`miabench.pipeline.signals`) runs it over the population once per
model and caches the arrays. They live beside the attacks because they are attack
knowledge: which per-sample statistic carries membership for this kind of model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from miabench.attacks.label_only import LabelOnly
from miabench.attacks.reconstruction import reconstruction_error
from miabench.attacks.segmentation import segmentation_error
from miabench.victims.base import Signals

#: Per-batch signal function: victim signals -> {name: (B,) or (B, P) tensor}.
SignalFn = Callable[[Signals], dict[str, torch.Tensor]]


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


def label_agreement_signals(signals: Signals, attack: LabelOnly) -> dict[str, torch.Tensor]:
    """Hard-label signal of a detector or segmenter that returns boxes or a mask only.

    What a deployed anonymizer returns (``defense=output_boxes`` / ``output_mask``) has no
    loss nor score, so the reference attacks read instead the label-only attack's
    per-sample agreement (Choquette-Choo et al., ICML 2021): the mean agreement of the hard
    answers to the sample and its shifted / mirrored copies with the truth, one value per
    sample and model, compared across models as LiRA and RMIA compare a loss.

    Args:
        signals: the victim's signal bundle with its ``query`` black box (answering through
            the defense's attacker view).
        attack: the label-only attack whose score is the signal
            (:class:`~miabench.attacks.label_only.LabelOnlyDetection` or
            :class:`~miabench.attacks.label_only.LabelOnlySegmentation`).

    Returns:
        ``agreement`` (B,) in [0, 1] (1 = every answer agrees with the truth exactly).
    """
    return {"agreement": attack.score(signals)["score"].to(torch.float64)}


def with_label_agreement(
    signals: Signals, family: SignalFn, attack: LabelOnly, needs: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """An anonymizer's signals: its family's (loss, confidence) where the attacker sees what
    they are computed from, and the hard-label ``agreement`` always.

    One signal config then serves a victim with and without ``defense=output_boxes`` /
    ``output_mask``: under those views the detector's loss is hidden, its family signals
    are left out and the reference attacks that read them are skipped (listed in
    results.json), while the attacks on ``agreement`` run in both cases.

    Args:
        signals: the victim's signal bundle (through the attacker view) with its ``query``.
        family: the family's signal function (e.g. :func:`detection_signals`).
        attack: the label-only attack whose score is ``agreement``
            (:func:`label_agreement_signals`).
        needs: signals ``family`` reads; when one is missing, ``family`` is not called.
    """
    out = dict(family(signals)) if all(k in signals for k in needs) else {}
    return out | label_agreement_signals(signals, attack)
