"""The signal contract for activations: names of layer signals and the hooks that read them.

A victim with optional activation signals (face recognition) returns the output of layer
``L`` under the signal name ``activation.L`` (:func:`signal_name`), read during its own
forward pass with :class:`LayerTap`. Activation auditors (``attacks/mint.py``) ask for
those names. Both sides import this module, so the contract lives with the victims and
attacks depend on it, never the other way round.

:class:`LayerTap` uses forward hooks rather than torchvision's ``create_feature_extractor``,
which would re-trace the model into a new module per layer set; hooks keep the victim's own
module, its weights and its ``forward``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any

import torch
from torch import nn

#: prefix of activation signals: ``activation.<layer>`` (e.g. ``activation.conv1``).
PREFIX = "activation."


def signal_name(layer: str) -> str:
    """Signal key under which a victim returns the activation of ``layer``."""
    return f"{PREFIX}{layer}"


def layer_of(signal: str) -> str | None:
    """``activation.conv1`` → ``conv1``; None for signals that are not activations."""
    return signal[len(PREFIX) :] if signal.startswith(PREFIX) else None


class LayerTap:
    """Context manager recording the outputs of named modules during forward passes.

    Args:
        modules: name → module to hook (names are the keys of :attr:`outputs`).
        detach: store detached outputs (auditing needs no gradients through the victim).
    """

    def __init__(self, modules: Mapping[str, nn.Module], detach: bool = True) -> None:
        self.modules = dict(modules)
        self.detach = detach
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Any:
        def record(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self.outputs[name] = output.detach() if self.detach else output

        return record

    def __enter__(self) -> LayerTap:
        self.outputs = {}
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
