"""Attack interface: per-sample membership scores from victim signals.

An attack gets the signal dictionaries a victim yields (see
:mod:`miabench.victims.base`) and returns, per sample, a ``score`` where *higher means
more likely a member*, plus any diagnostic columns worth saving (e.g. the two terms of
the membership error). Attacks that learn something (reference models, MINT auditors)
fit on a calibration set first; threshold attacks need no fit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import torch

from miabench.victims.base import QUERY, Signals


class Attack(ABC):
    """Base class of membership inference attacks.

    Args:
        name: short name used in result files and tables (the config key).
    """

    #: signals the attack reads; checked against the victim's ``provides``.
    requires: tuple[str, ...] = ()
    #: attacks that learn (reference models, MINT auditors) set this; the pipeline then
    #: calls :meth:`fit` with the calibration half before scoring.
    trainable: bool = False
    #: the sample ids a trainable attack learned from in its last :meth:`fit` (empty before
    #: and for attacks that learn nothing): its scores of these are in-sample, so whoever
    #: reads scores of the calibration half (the web app's calibration) leaves them out
    fitted_on: frozenset[str] = frozenset()
    #: the score at or above which the attack itself decides "member" (MINT's 0.5 on its
    #: sigmoid), or None for attacks that only rank; with one, the attack stage also
    #: reports ``accuracy_at_decision`` on the test half, as those attacks' papers do.
    decision_threshold: float | None = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.device = torch.device("cpu")

    def setup(self, device: torch.device | str) -> None:
        """Move whatever the attack owns (e.g. a feature backbone) to ``device``."""
        self.device = torch.device(device)

    def fit(self, batches: Callable[[], Iterator[tuple[Signals, torch.Tensor]]]) -> None:  # noqa: B027
        """Fit on the calibration half (only called when :attr:`trainable`).

        Args:
            batches: called with no argument, returns a fresh iterator over
                ``(signals, labels)`` pairs (labels: (B,) 1 member / 0 non-member) covering
                the calibration samples, members and non-members interleaved batch by
                batch. Call it again for another pass; nothing is held in memory between
                batches, so an attack that needs many passes should cache what it extracts.
        """

    @abstractmethod
    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Score one batch.

        Returns:
            ``{"score": (B,) tensor, higher = more likely member, **diagnostics}``; every
            value is a (B,) tensor.
        """

    def describe(self) -> dict[str, Any]:
        """What shaped this attack's scores (recorded in results, e.g. backbone weights)."""
        return {"name": self.name, "class": type(self).__qualname__}

    def check_signals(self, provides: tuple[str, ...]) -> None:
        """Raise a clear error when the victim lacks a signal this attack needs.

        ``query`` (:data:`~miabench.victims.base.QUERY`) is always there: every victim
        answers queries.
        """
        missing = [s for s in self.requires if s not in (*provides, QUERY)]
        if missing:
            raise ValueError(
                f"attack '{self.name}' needs signals {missing} that the victim does not provide "
                f"(it provides {list(provides)})"
            )
