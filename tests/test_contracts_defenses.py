"""Contract tests over ``conf/defense``, in the style of ``tests/test_contracts.py``.

Every ``conf/defense/*.yaml`` is collected from the folder, so a new defense is tested the
moment its YAML exists:

- composed with a tiny victim and its tiny embedded data (the data module it trains on, as
  ``pipeline/train.py`` builds it), the defense is applied through its hooks and one real
  training batch runs (DP-SGD through Opacus included), changing the victim's weights;
  what it reports is JSON;
- its ``attacker_view`` (post-hoc, e.g. output truncation), when set, transforms the
  victim's signals as declared and leaves the rest alone;
- the victim's cache key ignores what is post-hoc (``POST_HOC_DEFENSE_KEYS``: the name and
  the ``attacker_view``) and changes with every training field.

Which victim a defense trains is decided by its ``training._target_`` (``DEFENSE_VICTIMS``)
and how a view is checked by the view's ``_target_`` (``VIEW_CHECKS``): a new class that
neither table knows fails with a message naming what to add, never silently skips.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from miabench.data.embedded.fashion_mnist import ENV_DIR
from miabench.defenses.base import Defense, build_defense
from miabench.pipeline.code_hash import POST_HOC_DEFENSE_KEYS
from miabench.pipeline.common import build_datamodule
from miabench.pipeline.keys import victim_key
from miabench.victims.base import Signals
from tests.conftest import CONF_DIR, compose_cfg
from tests.test_contracts import SHRINK

DEFENSES = sorted(p.stem for p in (CONF_DIR / "defense").glob("*.yaml") if p.stem[0] != "_")

#: ``defense.training._target_`` (None: a post-hoc defense, no training hook) → the victim
#: config it is tested on and overrides it needs. pix2pix is the default victim; label
#: smoothing needs a victim whose loss reads ``label_smoothing`` (a classifier); early
#: stopping a validation set.
DEFENSE_VICTIMS: dict[str | None, tuple[str, tuple[str, ...]]] = {
    None: ("pix2pix", ()),
    "miabench.defenses.augmentation.Augmentation": ("pix2pix", ()),
    "miabench.defenses.dpsgd.DPSGD": ("pix2pix", ()),
    "miabench.defenses.regularization.Dropout": ("pix2pix", ()),
    "miabench.defenses.regularization.WeightDecay": ("pix2pix", ()),
    "miabench.defenses.early_stopping.EarlyStopping": ("pix2pix", ("split.n_validation=4",)),
    "miabench.defenses.regularization.LabelSmoothing": ("resnet18", ()),
}

#: victim config → the embedded data it trains on (built tiny from a fake Fashion-MNIST)
VICTIM_DATA = {"pix2pix": "edges2fashion", "resnet18": "fashion_classes"}

#: ``attacker_view._target_`` of a post-hoc defense made for one victim family → that
#: victim, its data and the overrides that build it tiny (instead of ``TINY``)
VIEW_VICTIMS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "miabench.defenses.truncation.BoxesOnly": (
        "ssdlite",
        "faces_on_scenes",
        (
            "data.image_size=64",
            "data.batch_size=4",
            "data.eval_batch_size=4",
            "data.datamodule.prepare.n_train=16",
            "data.datamodule.prepare.n_val=2",
            "data.datamodule.prepare.face_size=[12,24]",
            "split.n_members=8",
            "split.n_nonmembers=8",
        ),
    ),
}

#: tiny sizes: 12 train and 4 test pairs of 32x32, 8 members and 8 non-members, batches of 4
TINY = (
    "data.image_size=32",
    "data.load_size=32",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.datamodule.prepare.n_train=20",
    "data.datamodule.prepare.n_test=4",
    "split.n_members=8",
    "split.n_nonmembers=8",
)


def _check_quantize(spec: DictConfig, raw: Signals, seen: Signals) -> None:
    """``truncation.quantize``: the declared keys hold at most ``levels`` evenly spaced values."""
    levels = int(spec.levels)
    grid = torch.arange(levels, dtype=torch.float32) / (levels - 1)
    for key in spec.get("keys", ("output",)):
        values = seen[key].unique()
        assert len(values) <= levels, f"{key}: {len(values)} values for {levels} levels"
        assert torch.isclose(values[:, None], grid[None]).any(1).all(), f"{key} off the grid"
        assert not torch.equal(seen[key], raw[key]), f"{key}: the view changed nothing"


def _check_top_k(spec: DictConfig, raw: Signals, seen: Signals) -> None:
    """``truncation.top_k``: at most ``k`` non-zero scores along ``dim``, summing to one."""
    dim = int(spec.get("dim", 1))
    for key in spec.get("keys", ("output",)):
        assert (seen[key] != 0).sum(dim).max() <= int(spec.k), f"{key}: more than k kept"
        assert torch.allclose(seen[key].sum(dim), torch.ones(())), f"{key}: not normalised"


def _check_boxes_only(spec: DictConfig, raw: Signals, seen: Signals) -> None:
    """``truncation.BoxesOnly``: per image the boxes at or above the threshold, score 1."""
    threshold = float(spec.score_threshold)
    for before, after in zip(raw["detections"], seen["detections"], strict=True):
        kept = before["boxes"][before["scores"] >= threshold]
        assert torch.equal(after["boxes"], kept), "detections: not the thresholded boxes"
        assert torch.equal(after["scores"], torch.ones(len(kept))), "detections: scores left"


#: ``attacker_view._target_`` → ``(spec, raw signals, viewed signals) -> None`` asserting it
#: transformed what it declares
VIEW_CHECKS: dict[str, Callable[[DictConfig, Signals, Signals], None]] = {
    "miabench.defenses.truncation.quantize": _check_quantize,
    "miabench.defenses.truncation.top_k": _check_top_k,
    "miabench.defenses.truncation.BoxesOnly": _check_boxes_only,
}


def _training_target(defense: str) -> str | None:
    raw = OmegaConf.load(CONF_DIR / "defense" / f"{defense}.yaml")
    target = OmegaConf.select(raw, "training._target_")
    if target is None and "training" in raw:
        # a derived config (defaults: [dpsgd]) names its class in the parent
        target = OmegaConf.select(compose_cfg("train_victim", [f"defense={defense}"]).defense,
                                  "training._target_")  # fmt: skip
    if target not in DEFENSE_VICTIMS:
        pytest.fail(
            f"conf/defense/{defense}.yaml: defense class {target!r} has no tiny victim; add "
            "it to DEFENSE_VICTIMS in tests/test_contracts_defenses.py (the victim config it "
            "applies to and the overrides it needs)"
        )
    return target


def _compose(defense: str, root: Path, *extra: str) -> DictConfig:
    victim, overrides = DEFENSE_VICTIMS[_training_target(defense)]
    data, tiny = VICTIM_DATA.get(victim), TINY
    view = OmegaConf.select(OmegaConf.load(CONF_DIR / "defense" / f"{defense}.yaml"),
                            "attacker_view._target_")  # fmt: skip
    if view in VIEW_VICTIMS:
        victim, data, tiny = VIEW_VICTIMS[view]
    cfg = compose_cfg(
        "train_victim",
        [
            f"victim={victim}",
            f"data={data}",
            f"defense={defense}",
            *tiny,
            *overrides,
            *extra,
        ],
        root_dir=root,
    )
    for key, value in SHRINK.items():
        if OmegaConf.select(cfg, key, default="<absent>") != "<absent>":
            OmegaConf.update(cfg, key, value)
    return cfg


def _fit_one_batch(cfg: DictConfig, root: Path) -> tuple[Any, Any, Defense, list[str]]:
    """Apply the defense as pipeline/train.py does and fit one training batch; return the
    data module, the victim, the defense and the parameters that changed."""
    pl.seed_everything(0)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup()
    module = instantiate(cfg.victim.module)
    defense = build_defense(cfg)
    defense.prepare_module(module)
    fit_data = defense.prepare_datamodule(datamodule)
    before = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=defense.callbacks(),
    )
    trainer.fit(module, datamodule=fit_data)
    params = dict(module.named_parameters())
    changed = [n for n, p in before.items() if not torch.equal(p, params[n].detach())]
    return datamodule, module, defense, changed


@pytest.mark.parametrize("defense", DEFENSES)
def test_defense_trains_one_batch_and_views_as_declared(
    defense: str, fashion_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_DIR, str(fashion_source))
    cfg = _compose(defense, tmp_path)
    datamodule, module, built, changed = _fit_one_batch(cfg, tmp_path)
    where = f"conf/defense/{defense}.yaml"
    assert isinstance(built, Defense), where
    assert changed, f"{where}: one defended training batch changed no parameter"
    json.dumps(built.report())  # stored in victim.json

    spec = cfg.defense.get("attacker_view")
    if spec is None:
        return
    target = spec.get("_target_")
    if target not in VIEW_CHECKS:
        pytest.fail(
            f"{where}: attacker_view {target!r} has no check; add it to VIEW_CHECKS in "
            "tests/test_contracts_defenses.py (what the attacker sees truncated)"
        )
    module.eval()
    raw = next(module.iter_signals(datamodule.member_dataloader(), device="cpu"))
    view = instantiate(spec)
    seen = view(dict(raw))
    # a view may remove only what it declares hidden (attacks reading those are skipped)
    hides = set(getattr(view, "hides", ()))
    assert set(seen) == set(raw) - hides, f"{where}: the view added or dropped signals"
    for key, value in raw.items():
        if torch.is_tensor(value) and key not in hides:
            assert seen[key].shape == value.shape, f"{where}: {key} changed shape"
    VIEW_CHECKS[target](spec, raw, seen)
    declared = set(spec.get("keys", (spec.get("key", "output"),)))
    untouched = [k for k in raw if k not in declared and k not in hides and torch.is_tensor(raw[k])]
    assert all(torch.equal(raw[k], seen[k]) for k in untouched), f"{where}: changed {untouched}"


def _first_setting(node: Any, path: str = "") -> tuple[str, Any] | None:
    """The first number or plain string under ``node`` (no ``_target_``, no interpolation),
    depth first, with its dotted path (list items by index)."""
    if isinstance(node, dict | list):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if not str(key).startswith("_"):
                found = _first_setting(value, f"{path}.{key}" if path else str(key))
                if found is not None:
                    return found
    elif isinstance(node, int | float | str) and not isinstance(node, bool):
        if not (isinstance(node, str) and node.startswith("${")):
            return path, node
    return None


@pytest.mark.parametrize("defense", DEFENSES)
def test_defense_cache_key_ignores_post_hoc_fields_only(defense: str, tmp_path: Path) -> None:
    """``pipeline/keys.py``: a trained victim is keyed by what shapes training. A defense
    without ``training`` shares the undefended victim; the name and ``attacker_view``
    (``POST_HOC_DEFENSE_KEYS``) never enter the key; a training field does."""
    assert {"name", "attacker_view"} <= POST_HOC_DEFENSE_KEYS
    victim, overrides = DEFENSE_VICTIMS[_training_target(defense)]

    def compose(name: str) -> DictConfig:
        return compose_cfg(
            "train_victim",
            [f"victim={victim}", f"data={VICTIM_DATA[victim]}", f"defense={name}", *overrides],
            root_dir=tmp_path,
        )

    cfg = compose(defense)

    def key(*edits: tuple[str, Any]) -> str:
        edited = cfg.copy()
        for edit in edits:
            # replace, not merge: a view of another class has other fields
            OmegaConf.update(edited, *edit, merge=False)
        return victim_key(edited, "manifest")["key"]

    base = key()
    view = {"_target_": "miabench.defenses.truncation.quantize", "_partial_": True, "levels": 3}
    assert key(("defense.attacker_view", view)) == base, "attacker_view is in the key"
    assert key(("defense.name", "renamed")) == base, "defense.name is in the key"
    undefended = victim_key(compose("none"), "manifest")["key"]
    spec = OmegaConf.to_container(cfg.defense)
    if "training" not in spec:
        assert base == undefended, f"{defense}: post-hoc, yet not the undefended victim"
        return
    assert base != undefended, f"{defense}: trains differently, yet keyed as undefended"
    setting = _first_setting(spec["training"])
    assert setting is not None, f"conf/defense/{defense}.yaml: training has no setting"
    path, value = setting
    other = value + 1 if isinstance(value, int | float) else f"{value}x"
    changed = key((f"defense.training.{path}", other))
    assert changed != base, f"defense.training.{path} is not in the victim's cache key"


def test_unknown_defense_class_names_what_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defense class the contract does not know fails naming the table to extend."""
    folder = tmp_path / "conf" / "defense"
    folder.mkdir(parents=True)
    (folder / "novel.yaml").write_text("name: novel\ntraining:\n  _target_: pkg.Novel\n")
    monkeypatch.setattr(f"{__name__}.CONF_DIR", tmp_path / "conf")
    with pytest.raises(pytest.fail.Exception, match="add it to DEFENSE_VICTIMS"):
        _training_target("novel")
