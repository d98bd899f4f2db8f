"""The defense as one object: training, attacker view, cache-key fields and record."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from miabench.defenses.base import NoDefense
from miabench.defenses.regularization import WeightDecay
from miabench.defenses.setting import POST_HOC_KEYS, DefenseSetting
from tests.conftest import CONF_DIR


def _setting(name: str) -> DefenseSetting:
    return DefenseSetting.of(
        OmegaConf.create({"defense": OmegaConf.load(CONF_DIR / "defense" / f"{name}.yaml")})
    )


def test_post_hoc_defense_trains_undefended_and_changes_only_the_view() -> None:
    truncation = _setting("output_truncation")
    assert isinstance(truncation.training(), NoDefense)
    assert truncation.key_fields() == _setting("none").key_fields()
    view = truncation.attacker_view()
    levels = view({"output": torch.linspace(0, 1, 101)})["output"].unique()
    assert len(levels) <= truncation.attacker_view_spec["levels"]
    assert truncation.record() == {
        "defense": "output_truncation",
        "attacker_view": truncation.attacker_view_spec,
    }


def test_training_defense_enters_the_key_and_the_name_does_not() -> None:
    decay = _setting("weight_decay")
    assert isinstance(decay.training(), WeightDecay)
    assert decay.attacker_view() is None and decay.record() == {"defense": "weight_decay"}
    assert "training" in decay.key_fields() and not POST_HOC_KEYS & decay.key_fields().keys()


def test_absent_defense_is_none() -> None:
    setting = DefenseSetting.of(OmegaConf.create({}))
    assert setting.name == "none" and isinstance(setting.training(), NoDefense)
    assert setting.key_fields() == {} and setting.attacker_view() is None
