"""A run's identity and its folder name: built, parsed and compared in one place.

An attack folder (and the record a table keeps of it under ``runs/``) is named

    [<prefix>-]<victim>-<data>-<defense>-s<seed>[-m<n_models>][-<key>]

``prefix`` is ``reference`` for the reference-model stage, ``n_models`` its number of
reference models, and ``key`` the hash of everything that shaped the run (a record committed
before records kept the hash has none). Victim, data and defense names hold no ``-`` (the
configs' ``name`` keys), so a name parses back into the same fields and
``str(RunId.parse(name)) == name``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from miabench.defenses.setting import DefenseSetting

_PART = r"[^-]+"
_NAME = re.compile(
    rf"(?:(?P<prefix>{_PART})-)?(?P<victim>{_PART})-(?P<data>{_PART})-(?P<defense>{_PART})"
    r"-s(?P<seed>\d+)(?:-m(?P<n_models>\d+))?(?:-(?P<key>[0-9a-f]+))?"
)


@dataclass(frozen=True)
class RunId:
    """Who a run attacked, how, with which seed, and the key of what shaped it.

    Attributes:
        victim: the victim config's ``name``.
        data: the data config's ``name``.
        defense: the defense config's ``name``.
        seed: the run's seed.
        key: hash of what shaped the run (None in records named without it).
        prefix: the stage, when not the ordinary attack stage (``reference``).
        n_models: reference models of a reference-stage run.
    """

    victim: str
    data: str
    defense: str
    seed: int
    key: str | None = None
    prefix: str | None = None
    n_models: int | None = None

    @classmethod
    def of(
        cls,
        cfg: DictConfig,
        key: str | None = None,
        prefix: str | None = None,
        n_models: int | None = None,
    ) -> RunId:
        """The identity of the run ``cfg`` configures (victim, data, defense and seed)."""
        return cls(
            cfg.victim.name,
            cfg.data.name,
            DefenseSetting.of(cfg).name,
            cfg.seed,
            key,
            prefix,
            n_models,
        )

    def __str__(self) -> str:
        """The folder name (the pipeline's attack folders and the tables' records)."""
        parts = [self.prefix] if self.prefix is not None else []
        parts += [self.victim, self.data, self.defense, f"s{self.seed}"]
        if self.n_models is not None:
            parts.append(f"m{self.n_models}")
        if self.key is not None:
            parts.append(self.key)
        return "-".join(parts)

    @classmethod
    def parse(cls, name: str) -> RunId:
        """The identity a folder name says (the inverse of ``str``).

        Raises:
            ValueError: ``name`` is not a run's folder name (the message names it).
        """
        match = _NAME.fullmatch(name)
        if match is None:
            raise ValueError(
                f"{name!r} is not a run folder name "
                "([<prefix>-]<victim>-<data>-<defense>-s<seed>[-m<n_models>][-<key>])"
            )
        found: dict[str, Any] = match.groupdict()
        found["seed"] = int(found["seed"])
        if found["n_models"] is not None:
            found["n_models"] = int(found["n_models"])
        run = cls(**found)
        if str(run) != name:  # e.g. a seed written "s01": no run is named so
            raise ValueError(f"{name!r} is not a run folder name as the pipeline writes them")
        return run

    @property
    def setting(self) -> tuple[str | None, str, str, str, int | None]:
        """Everything but the seed and the key: what runs of one setting share."""
        return self.prefix, self.victim, self.data, self.defense, self.n_models

    def same_setting(self, other: RunId) -> bool:
        """True if ``other`` is a run of this setting (any seed, any key)."""
        return self.setting == other.setting
