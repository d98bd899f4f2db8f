"""Output truncation: post-hoc defenses on what the attacker sees (``attacker_view``).

They act after training, so ``defense=output_truncation`` reuses the undefended victim
(the cache key ignores ``attacker_view``), and utility is still measured on raw outputs.
A view maps a victim's signal dictionary to what the attacker sees; the attack stage also
passes the answers to an attack's own queries (``query``, label-only attacks) through it.
A view with a ``hides`` attribute removes those signals; attacks that read them are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from miabench.victims.base import Signals


def quantize(signals: Signals, levels: int, keys: Sequence[str] = ("output",)) -> Signals:
    """Round image signals in [0, 1] to ``levels`` evenly spaced values.

    Args:
        signals: a victim's signals.
        levels: number of values kept per channel (2 = binary, 256 = 8-bit).
        keys: which signals the attacker sees truncated (the query and its ground truth
            are the attacker's own and stay as they are).
    """
    if levels < 2:
        raise ValueError(f"defense.attacker_view.levels must be >= 2, got {levels}")
    out = dict(signals)
    for key in keys:
        if key not in signals:
            raise KeyError(f"attacker_view.quantize: the victim provides no {key!r} signal")
        x = signals[key].clamp(0.0, 1.0)
        out[key] = torch.round(x * (levels - 1)) / (levels - 1)
    return out


def top_k(signals: Signals, k: int, keys: Sequence[str] = ("output",), dim: int = 1) -> Signals:
    """Keep the ``k`` largest scores along ``dim`` (e.g. class probabilities per pixel),
    set the others to zero and renormalise what is kept to sum to one.

    Args:
        signals: a victim's signals.
        k: scores kept per position.
        keys: which signals to truncate.
        dim: the class dimension.
    """
    if k < 1:
        raise ValueError(f"defense.attacker_view.k must be >= 1, got {k}")
    out = dict(signals)
    for key in keys:
        if key not in signals:
            raise KeyError(f"attacker_view.top_k: the victim provides no {key!r} signal")
        x = signals[key]
        k_eff = min(k, x.shape[dim])
        index = x.topk(k_eff, dim=dim).indices
        kept = torch.zeros_like(x).scatter(dim, index, x.gather(dim, index))
        out[key] = kept / kept.sum(dim, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return out


class BoxesOnly:
    """What a deployed anonymizer returns of a detector: the boxes it masks, nothing else.

    Detections below ``score_threshold`` (the deployment threshold) are dropped and every
    kept box gets score 1.0 (present or not: no confidence leaves the device); the signals a
    deployment never returns (the detector's loss, which needs its internals in training
    mode) are removed, so attacks that read them are skipped and recorded as such.

    Args:
        score_threshold: the deployment threshold of the detector.
        key: the detections signal (per image ``{"boxes", "scores"}``).
        hides: signals removed from what the attacker sees.
    """

    def __init__(
        self,
        score_threshold: float = 0.5,
        key: str = "detections",
        hides: Sequence[str] = ("loss", "loss_terms"),
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(
                f"defense.attacker_view.score_threshold must be in [0, 1], got {score_threshold}"
            )
        self.score_threshold, self.key, self.hides = score_threshold, key, tuple(hides)

    def __call__(self, signals: Signals) -> Signals:
        if self.key not in signals:
            raise KeyError(f"attacker_view.BoxesOnly: the victim provides no {self.key!r} signal")
        out = {k: v for k, v in signals.items() if k not in self.hides}
        kept = []
        for det in signals[self.key]:
            boxes = det["boxes"][det["scores"] >= self.score_threshold]
            kept.append({"boxes": boxes, "scores": boxes.new_ones(len(boxes))})
        out[self.key] = kept
        return out
