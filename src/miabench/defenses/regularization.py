"""Regularisation defenses: weight decay, dropout, label smoothing.

Each acts through a generic mechanism (optimizer param groups, module traversal, a victim
attribute), so it applies to any victim that exposes that mechanism and refuses clearly
otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from torch import nn

from miabench.defenses.base import Defense, DefenseNotApplicable

#: activations after which :class:`Dropout` inserts dropout when a victim has none
DEFAULT_ACTIVATIONS: tuple[str, ...] = ("ReLU", "LeakyReLU", "GELU", "SiLU", "ELU")


class _SetWeightDecay(pl.Callback):
    """Sets ``weight_decay`` in every param group of every optimizer Lightning built."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.seen: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_fit_start runs after configure_optimizers, so this works for any victim,
        # automatic or manual optimisation, one optimizer or several.
        if not trainer.optimizers:
            raise DefenseNotApplicable(
                f"weight_decay: {type(pl_module).__name__} configured no optimizer"
            )
        self.seen = []
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                if "weight_decay" not in group:
                    raise DefenseNotApplicable(
                        f"weight_decay: optimizer {type(optimizer).__name__} of "
                        f"{type(pl_module).__name__} has no weight_decay setting"
                    )
                group["weight_decay"] = self.value
            self.seen.append(
                {"optimizer": type(optimizer).__name__, "param_groups": len(optimizer.param_groups)}
            )


class WeightDecay(Defense):
    """L2 weight decay on every parameter of every optimizer of the victim.

    The value goes into the optimizers' param groups (for Adam an L2 term added to the
    gradient, for AdamW decoupled decay), whatever ``weight_decay`` the victim's optimizer
    config had.

    Args:
        value: the weight decay coefficient.
    """

    name = "weight_decay"

    def __init__(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"defense.training.value must be >= 0, got {value}")
        self.value = float(value)
        self._callback = _SetWeightDecay(self.value)

    def callbacks(self) -> list[pl.Callback]:
        return [self._callback]

    def report(self) -> dict[str, Any]:
        return {"weight_decay": self.value, "optimizers": self._callback.seen}


def _scopes(module: nn.Module, names: Sequence[str] | None, what: str) -> list[nn.Module]:
    if not names:
        return [module]
    scopes = []
    for name in names:
        try:
            scopes.append(module.get_submodule(name))
        except AttributeError as err:
            children = [n for n, _ in module.named_children()]
            raise DefenseNotApplicable(
                f"{what}: {type(module).__name__} has no submodule {name!r} "
                f"(defense.training.modules); its children are {children}"
            ) from err
    return scopes


class Dropout(Defense):
    """Dropout at a given rate: set on the victim's dropout layers, or inserted.

    When the chosen modules contain dropout layers their rate is set to ``rate``. Otherwise
    a dropout layer is inserted after every activation listed in ``activations`` (the
    activation is replaced by ``Sequential(activation, Dropout(rate))``; activations hold no
    parameters, so the victim's state dict keys stay the same).

    Args:
        rate: dropout probability.
        modules: dotted names of the submodules to act on (e.g. ``[generator]``); all when
            empty.
        activations: class names of the activations to insert dropout after.
    """

    name = "dropout"

    def __init__(
        self,
        rate: float,
        modules: Sequence[str] | None = None,
        activations: Sequence[str] = DEFAULT_ACTIVATIONS,
    ) -> None:
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"defense.training.rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self.modules = list(modules or [])
        self.activations = tuple(activations)
        self._done: dict[str, Any] = {}

    def prepare_module(self, module: pl.LightningModule) -> None:
        scopes = _scopes(module, self.modules, "dropout")
        existing = [
            m
            for scope in scopes
            for m in scope.modules()
            if isinstance(m, nn.modules.dropout._DropoutNd)
        ]
        if existing:
            for layer in existing:
                layer.p = self.rate
            self._done = {"mode": "set", "layers": len(existing)}
            return
        inserted = 0
        for scope in scopes:
            inserted += self._insert(scope)
        if not inserted:
            raise DefenseNotApplicable(
                f"dropout: {type(module).__name__} has no dropout layers and no activation "
                f"among {list(self.activations)} to insert one after "
                "(defense.training.activations)"
            )
        self._done = {"mode": "inserted", "layers": inserted}

    def _insert(self, parent: nn.Module) -> int:
        count = 0
        for name, child in list(parent.named_children()):
            if type(child).__name__ in self.activations:
                setattr(parent, name, nn.Sequential(child, nn.Dropout(self.rate)))
                count += 1
            elif not isinstance(child, nn.modules.dropout._DropoutNd):
                count += self._insert(child)
        return count

    def report(self) -> dict[str, Any]:
        return {"rate": self.rate, "modules": self.modules or ["<all>"], **self._done}


class LabelSmoothing(Defense):
    """Label smoothing for victims whose loss reads a ``label_smoothing`` attribute.

    Classification and segmentation victims expose ``self.label_smoothing`` (used by their
    cross-entropy); victims without one (image translation, detection) are refused.

    Args:
        value: smoothing in [0, 1).
    """

    name = "label_smoothing"

    def __init__(self, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"defense.training.value must be in [0, 1), got {value}")
        self.value = float(value)

    def prepare_module(self, module: pl.LightningModule) -> None:
        if not hasattr(module, "label_smoothing"):
            raise DefenseNotApplicable(
                f"label_smoothing: {type(module).__name__} has no `label_smoothing` "
                "attribute read by its loss (only classification/segmentation victims "
                "have one); choose another defense"
            )
        module.label_smoothing = self.value

    def report(self) -> dict[str, Any]:
        return {"label_smoothing": self.value}
