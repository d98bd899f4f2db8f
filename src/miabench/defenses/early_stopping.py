"""Early stopping on a validation split disjoint from members and non-members."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping

from miabench.defenses.base import Defense, DefenseNotApplicable


class EarlyStopping(Defense):
    """Lightning's :class:`~lightning.pytorch.callbacks.EarlyStopping` on ``monitor``.

    The validation samples are the manifest's ``validation`` role (``split.n_validation``),
    drawn from the member pool and disjoint in content from members and non-members, so
    stopping never looks at a non-member. The victim logs ``monitor`` in its
    ``validation_step`` (the base victim logs ``val/<utility metric>``; segmentation victims
    log ``val/loss``). Training stops ``patience`` validations after the best one, and keeps
    the weights it has then.

    Args:
        monitor: logged validation metric, e.g. ``val/l1``.
        mode: ``min`` or ``max``.
        patience: validations without improvement before stopping.
        min_delta: smallest change counted as an improvement.
    """

    name = "early_stopping"

    def __init__(
        self, monitor: str, mode: str = "min", patience: int = 3, min_delta: float = 0.0
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"defense.training.mode must be min or max, got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.min_delta = min_delta
        self._callback = LightningEarlyStopping(
            monitor=monitor, mode=mode, patience=patience, min_delta=min_delta, strict=True
        )
        self._n_validation = 0

    def prepare_datamodule(self, datamodule: Any) -> Any:
        manifest = getattr(datamodule, "manifest", None)
        n = len(manifest.ids("validation")) if manifest is not None else 0
        if n == 0 or not hasattr(datamodule, "val_dataloader"):
            raise DefenseNotApplicable(
                "early_stopping needs a validation split: set split.n_validation > 0 "
                "(the same value for every defense compared, so the member split is identical)"
            )
        self._n_validation = n
        return datamodule

    def callbacks(self) -> list[pl.Callback]:
        return [self._callback]

    def report(self) -> dict[str, Any]:
        cb = self._callback
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "n_validation": self._n_validation,
            "stopped_epoch": int(cb.stopped_epoch),
            "stopped_early": bool(cb.stopped_epoch > 0),
            "best_score": None if cb.best_score is None else float(cb.best_score),
        }
