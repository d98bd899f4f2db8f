"""A configured defense as one object: what it changes in training, what the attacker sees,
and what of it enters the victim's cache key.

``conf/defense/<name>.yaml`` holds a ``name``, an optional ``training`` spec (a
:class:`~miabench.defenses.base.Defense` acting while the victim trains) and an optional
``attacker_view`` (a post-hoc transform of the outputs the attacker receives: output
truncation, boxes only). Training, the cache keys, the attack and signal stages and the
records all ask a :class:`DefenseSetting` instead of reading ``cfg.defense`` themselves, so
a new kind of defense changes this one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate

from miabench.utils.config import to_container

if TYPE_CHECKING:
    from miabench.defenses.base import Defense

#: Defense keys that do not change the trained victim: its label, and what the attacker sees
#: of the outputs (applied after training). Defenses that differ only there share one victim.
POST_HOC_KEYS = frozenset({"name", "attacker_view"})


@dataclass(frozen=True)
class DefenseSetting:
    """One configured defense (``cfg.defense``), resolved to plain containers.

    Attributes:
        name: its label in run ids, records and tables (``none`` when unset).
        config: the whole resolved ``defense`` node.
    """

    name: str
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: Any) -> DefenseSetting:
        """The defense of a run config (``cfg.defense``; absent = no defense)."""
        node = cfg.get("defense") if hasattr(cfg, "get") else None
        config = to_container(node) if node is not None else {}
        config = dict(config or {})
        return cls(name=str(config.get("name", "none")), config=config)

    def training(self) -> Defense:
        """The training-time defense (``NoDefense`` for post-hoc or no defense)."""
        # imported here: run ids and records ask for the name without loading Lightning
        from miabench.defenses.base import build_training_defense  # noqa: PLC0415

        return build_training_defense(self.config.get("training"))

    @property
    def attacker_view_spec(self) -> dict[str, Any] | None:
        """The ``attacker_view`` spec, or None when the attacker sees the raw outputs."""
        return self.config.get("attacker_view")

    def attacker_view(self) -> Callable[..., Any] | None:
        """The post-hoc transform of what the attacker sees, or None.

        It applies to the signals given to attacks only; utility is measured on the raw
        outputs.
        """
        spec = self.attacker_view_spec
        return instantiate(spec) if spec is not None else None

    def key_fields(self) -> dict[str, Any]:
        """What of the defense shapes the trained victim (its cache key and code hash)."""
        return {k: v for k, v in self.config.items() if k not in POST_HOC_KEYS}

    def record(self) -> dict[str, Any]:
        """What a run's results record of the defense: its name and attacker view, if any."""
        out: dict[str, Any] = {"defense": self.name}
        if self.attacker_view_spec is not None:
            out["attacker_view"] = self.attacker_view_spec
        return out
