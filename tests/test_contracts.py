"""Contract tests over the config registry, in the style of timm's ``tests/test_models.py``.

Every ``conf/victim/*.yaml`` and every ``conf/attack/*.yaml`` is collected from the folder
(files starting with ``_`` are shared fragments), so a new victim or attack is tested the
moment its YAML exists:

- a victim, composed with tiny data and widths (``weights: none``), trains one optimisation
  step on a tiny batch and then yields every signal it declares (``provides``), batch-first
  (dim 0 = the batch), finite, with one ``sample_id`` per sample;
- every attack of an attack config, fed the signals of a tiny victim whose signals it reads,
  is set up, fitted on a tiny calibration set when it learns, and returns one finite score
  per sample; the reference-model attacks (``view`` + ``score`` entries) are pure functions
  of a samples x models array and are called on a synthetic one.

Which data a victim is composed with, and which victim an attack reads, are what the
experiments (``conf/experiment``) already pair: a victim takes its own experiment (an
embedded one first) or, for a config no experiment names, that of a victim of its module
class; an attack takes the victim of the first experiment running its class (or its
module). The tiny items are synthetic, in the batch format the data contract
(``tests/test_contracts_data.py``) checks for that data's dataset class, and are checked by
it. A new YAML is the only thing to add; a victim or attack no experiment pairs fails with
a message naming what to add, never silently skips.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from miabench.attacks.base import Attack
from miabench.data.segmentation_base import instance_edges, one_hot_labels
from miabench.utils.config import composed_experiments
from miabench.victims.base import Signals, Victim
from tests.conftest import CONF_DIR, compose_cfg
from tests.test_contracts_data import _classes, _detection, _image_pair, _layout, _segmentation

VICTIMS = sorted(p.stem for p in (CONF_DIR / "victim").glob("*.yaml") if p.stem[0] != "_")
ATTACKS = sorted(p.stem for p in (CONF_DIR / "attack").glob("*.yaml") if p.stem[0] != "_")

#: Contract failures found by this file and left to the victim's owner (strict: a fix makes
#: the test pass and the mark must go).
KNOWN_DEFECTS: dict[str, str] = {}

#: samples per tiny batch; the calibration set is two batches (members, non-members)
BATCH = 4

#: Widths and weights that shrink a victim, applied to every victim config that has the key
#: (and only those). Depths stay as configured (IResNet-100 keeps its 100 layers, UperNet its
#: ResNet-101): the contract runs each architecture as named, at widths and image sizes a
#: CPU test affords.
SHRINK = {
    "victim.module.net.weights": "none",
    "victim.module.net.decoder_channels": 16,
    "victim.module.net.rfb_channels": 8,
    "victim.module.net.edge_channels": 8,
    "victim.module.detector.weights": "none",
    "victim.module.detector.width_mult": 0.25,
    "victim.module.generator.ngf": 8,
    "victim.module.generator.num_downs": 5,
    "victim.module.generator.n_blocks": 1,
    "victim.module.generator.hidden": 16,
    "victim.module.discriminator.ndf": 8,
    "victim.module.discriminator.n_layers": 2,
    "victim.module.vgg_weights": "none",
    "victim.embedding_size": 16,
    "data.n_member_identities": 2,
}


def _image(cfg: DictConfig, g: torch.Generator) -> torch.Tensor:
    side = int(cfg.data.image_size)
    return torch.rand(int(cfg.data.get("channels", 3)), side, side, generator=g)


def _aligned_item(cfg: DictConfig, i: int, g: torch.Generator) -> dict[str, Any]:
    """An item of the pix2pix aligned layout (data/aligned.py): two images in [0, 1]."""
    return {"sample_id": f"train/{i}.png", "input": _image(cfg, g), "target": _image(cfg, g)}


def _segmentation_item(cfg: DictConfig, i: int, g: torch.Generator) -> dict[str, Any]:
    """An item of data/segmentation_base.py: for ``task: segmentation`` an image and a label
    map; for ``task: label2photo`` the one-hot label map (+ the instance-edge channel with
    ``boundary``) and the photo."""
    side = int(cfg.data.image_size)
    k = int(cfg.data.num_classes)
    labels = torch.randint(0, k, (side, side), generator=g)
    labels[0, :2] = int(cfg.data.ignore_index)  # unlabelled pixels occur in every layout
    if cfg.data.get("task") != "label2photo":
        return {"sample_id": f"training/{i}.png", "input": _image(cfg, g), "target": labels}
    onehot = one_hot_labels(labels, k)
    if cfg.data.get("boundary", False):
        onehot = torch.cat([onehot, instance_edges(labels)[None]])
    return {"sample_id": f"training/{i}.png", "input": onehot, "target": _image(cfg, g)}


def _detection_item(cfg: DictConfig, i: int, g: torch.Generator) -> dict[str, Any]:
    """An item of data/wider_face.py: an image, its boxes (x1, y1, x2, y2) and flags."""
    side = float(cfg.data.image_size)
    n = 1 + i % 2
    corner = torch.rand(n, 2, generator=g) * side / 2
    size = side / 8 + torch.rand(n, 2, generator=g) * side / 4
    return {
        "sample_id": f"train/0--event/{i}.jpg",
        "input": _image(cfg, g),
        "boxes": torch.cat([corner, corner + size], dim=1),
        "ignore": torch.zeros(n, dtype=torch.bool),
    }


def _class_item(cfg: DictConfig, i: int, g: torch.Generator) -> dict[str, Any]:
    """An item of the class-labelled layouts: data/fashion_classes.py (a class index) and
    data/faces.py (a member identity as the class, and the identity)."""
    data = cfg.data
    k = int(data.n_member_identities if "n_member_identities" in data else data.num_classes)
    label = torch.tensor(i % k)
    return {
        "sample_id": f"id{i % k:03d}/{i}.png",
        "input": _image(cfg, g),
        "target": label,
        "identity": label,
    }


@dataclass(frozen=True)
class Items:
    """Synthetic items of one batch format, at sizes a CPU test affords.

    Attributes:
        item: ``(cfg, index, generator) -> item`` in that format.
        overrides: tiny sizes for the data config.
    """

    item: Callable[[DictConfig, int, torch.Generator], dict[str, Any]]
    overrides: tuple[str, ...] = ("data.image_size=32",)


#: keyed by the batch check of the data contract's ``Layout`` for the data's dataset class
#: (tests/test_contracts_data.py: ``LAYOUTS``), which every tiny batch here must pass, and
#: the data's ``task``; label→photo at 64 px: SPADE's five up-samplings start from 2 x 2
ITEMS = {
    (_image_pair, None): Items(_aligned_item),
    (_segmentation, "segmentation"): Items(_segmentation_item),
    (_segmentation, "label2photo"): Items(_segmentation_item, ("data.image_size=64",)),
    (_detection, None): Items(_detection_item, ("data.image_size=64",)),
    (_classes, None): Items(_class_item, ("data.image_size=16",)),
}


@dataclass(frozen=True)
class Pairing:
    """What one experiment pairs: its victim, data and the attack classes it runs."""

    experiment: str
    victim: str
    data: str
    attacks: frozenset[str]


@functools.cache
def _pairings() -> tuple[Pairing, ...]:
    """Every experiment's pairing, the embedded ones (tiny, CPU) first."""
    out = []
    for name, cfg in composed_experiments().items():
        choices = cfg.hydra.runtime.choices
        attacks = frozenset(
            str(v._target_)
            for v in cfg.attack.values()
            if isinstance(v, DictConfig) and "_target_" in v
        )
        out.append(Pairing(name, str(choices.victim), str(choices.data), attacks))
    return tuple(
        sorted(out, key=lambda p: (not p.experiment.startswith("embedded/"), p.experiment))
    )


#: settings of attack entries that shrink them, applied where an entry has the key: the
#: feature backbone of the membership error (any torchvision ResNet) and the auditors'
#: training length
ATTACK_SHRINK = {
    "miabench.attacks.predictability.membership_error": {
        "arch": "resnet18",
        "weights": "none",
        "feature_size": 8,
    },
    "miabench.attacks.segmentation": {"arch": "resnet18", "weights": "none", "feature_size": 8},
    "miabench.attacks.mint": {"epochs": 1, "n_train": 2 * BATCH, "batch_size": BATCH},
    "miabench.attacks.identity_proximity": {"n_train": 2 * BATCH},
}


def _raw(group: str, name: str) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{name}.yaml"))


def _victim_pairing(victim: str) -> tuple[Pairing, tuple[str, ...]]:
    """The experiment a victim config is composed with, and the overrides doing so: its own
    experiment, or that of a victim of its module class with ``victim=<victim>``."""
    own = [p for p in _pairings() if p.victim == victim]
    if own:
        return own[0], (f"experiment={own[0].experiment}",)
    target = _raw("victim", victim).get("module", {}).get("_target_")
    kin = [p for p in _pairings() if _raw("victim", p.victim)["module"]["_target_"] == target]
    if kin:
        return kin[0], (f"experiment={kin[0].experiment}", f"victim={victim}")
    pytest.fail(
        f"conf/victim/{victim}.yaml: no experiment pairs it, or a victim of its module class "
        f"{target!r}, with data; add one (conf/experiment/embedded/<victim>_<data>.yaml) "
        "naming the data it trains on"
    )


@functools.cache
def _data_format(data: str) -> tuple[Callable[[DictConfig, dict[str, Any]], None], str | None]:
    """The data contract's batch check for ``conf/data/<data>.yaml`` and the data's task
    (composed once per data config, however many victims train on it)."""
    return _layout(data).check, compose_cfg("train_victim", [f"data={data}"]).data.get("task")


def _items(victim: str) -> Items:
    """The synthetic items in the batch format of the victim's data."""
    data = _victim_pairing(victim)[0].data
    key = _data_format(data)
    if key not in ITEMS:
        pytest.fail(
            f"conf/victim/{victim}.yaml: its data {data!r} serves batches checked by "
            f"{key[0].__name__} (tests/test_contracts_data.py) for task {key[1]!r}; add Items "
            "building them to ITEMS in tests/test_contracts.py"
        )
    return ITEMS[key]


@dataclass
class TinyVictim:
    """A victim config built small, trained one step, with its tiny data."""

    cfg: DictConfig
    model: Victim
    loader: DataLoader
    changed: list[str] = field(default_factory=list)

    def batches(self) -> list[dict[str, Any]]:
        return list(self.loader)


def _compose_victim(victim: str, root: Path, *extra: str) -> DictConfig:
    _, overrides = _victim_pairing(victim)
    cfg = compose_cfg(
        "train_victim", [*overrides, *_items(victim).overrides, *extra], root_dir=root
    )
    for key, value in SHRINK.items():
        if OmegaConf.select(cfg, key, default="<absent>") != "<absent>":
            OmegaConf.update(cfg, key, value)
    return cfg


def _train_one_step(model: Victim, loader: DataLoader, root: Path) -> list[str]:
    """Fit ``model`` for exactly one training batch; return the parameters that changed."""
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        limit_train_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
    )
    trainer.fit(model, train_dataloaders=loader)
    params = dict(model.named_parameters())
    return [n for n, p in before.items() if not torch.equal(p, params[n].detach())]


class TinyVictims:
    """Builds each tiny victim once per module (the attack contract reuses them)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, TinyVictim] = {}

    def get(self, victim: str) -> TinyVictim:
        if victim not in self.cache:
            cfg = _compose_victim(victim, self.root / victim)
            g = torch.Generator().manual_seed(0)
            make = _items(victim).item
            items = [make(cfg, i, g) for i in range(2 * BATCH)]
            spec = cfg.data.datamodule.get("collate_fn")
            loader = DataLoader(
                items, batch_size=BATCH, collate_fn=instantiate(spec) if spec else None
            )
            # the batches are what the data's reader serves (the data contract's check)
            check, _ = _data_format(_victim_pairing(victim)[0].data)
            check(cfg, next(iter(loader)))
            torch.manual_seed(0)
            model = instantiate(cfg.victim.module)
            changed = _train_one_step(model, loader, self.root / victim)
            self.cache[victim] = TinyVictim(cfg, model, loader, changed)
        return self.cache[victim]


@pytest.fixture(scope="module")
def tiny_victims(tmp_path_factory: pytest.TempPathFactory) -> TinyVictims:
    return TinyVictims(tmp_path_factory.mktemp("contracts"))


def _check_finite(name: str, value: Any) -> None:
    """Every float tensor in ``value`` (a tensor, or lists/dicts of them) is finite."""
    if torch.is_tensor(value):
        if value.is_floating_point():
            assert torch.isfinite(value).all(), f"signal {name} holds non-finite values"
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_finite(f"{name}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(f"{name}[{i}]", item)


def _check_batch_first(name: str, value: Any, n: int) -> None:
    """A per-sample signal has the batch as dim 0 (a tensor), one entry per sample (a list,
    e.g. detections) or is a dict of such (per-term losses); all of it finite."""
    if isinstance(value, str):
        # batch-level metadata (the victim fingerprint keying auditors' caches)
        assert value, f"signal {name} is an empty string"
        return
    if torch.is_tensor(value):
        assert value.ndim >= 1 and value.shape[0] == n, f"{name}: shape {tuple(value.shape)}"
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_batch_first(f"{name}.{key}", item, n)
    elif isinstance(value, list):
        assert len(value) == n, f"{name}: {len(value)} entries for {n} samples"
    else:
        raise AssertionError(f"signal {name} is a {type(value).__name__}, not batch-first")
    _check_finite(name, value)


def _select_all(model: Victim) -> None:
    """Ask a victim with optional signals (named-layer activations) for all of them."""
    model.select_signals(model.provides)


@pytest.mark.parametrize(
    "victim",
    [
        pytest.param(v, marks=pytest.mark.xfail(strict=True, reason=KNOWN_DEFECTS[v]))
        if v in KNOWN_DEFECTS
        else v
        for v in VICTIMS
    ],
)
def test_victim_trains_one_step_and_yields_declared_signals(
    victim: str, tiny_victims: TinyVictims
) -> None:
    tiny = tiny_victims.get(victim)
    assert tiny.changed, f"{victim}: one training step changed no parameter"
    model = tiny.model
    _select_all(model)
    signals = next(model.iter_signals(tiny.loader, device="cpu"))
    missing = [s for s in model.provides if s not in signals]
    assert not missing, f"{victim}: declares {missing} in provides but signal_step omits them"
    assert len(signals["sample_id"]) == BATCH
    assert signals["sample_id"] == tiny.batches()[0]["sample_id"]
    for name in model.provides:
        _check_batch_first(name, signals[name], BATCH)


def _attack_victim(attack_file: str, entry: str, target: str) -> str:
    """The victim of the first experiment running the attack class ``target`` (else one
    running a class of its module)."""
    module = target.rsplit(".", 1)[0]
    for same in (lambda t: t == target, lambda t: t.rsplit(".", 1)[0] == module):
        for pairing in _pairings():
            if any(same(t) for t in pairing.attacks):
                return pairing.victim
    pytest.fail(
        f"conf/attack/{attack_file}.yaml: attack.{entry} ({target}) is run by no experiment, "
        "so no victim is known to give its signals; add an experiment running it "
        "(conf/experiment/embedded/) with the victim whose signals it reads"
    )


def _calibration(tiny: TinyVictim) -> Callable[[], Iterator[tuple[Signals, torch.Tensor]]]:
    """Fresh ``(signals, labels)`` streams: the first batch as members, the second not."""

    def batches() -> Iterator[tuple[Signals, torch.Tensor]]:
        for k, signals in enumerate(tiny.model.iter_signals(tiny.loader, device="cpu")):
            yield signals, torch.full((len(signals["sample_id"]),), float(k == 0))

    return batches


def _membership(n: int, m: int, seed: int = 0) -> np.ndarray:
    """Each sample IN half of the ``m`` models, drawn per sample (balanced sides)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(m) < m // 2 for _ in range(n)])


def _check_reference_attacks(attack_file: str, cfg: DictConfig) -> None:
    """Reference attacks are pure ``(target, reference, membership) -> (N,)`` functions of
    the views ``reference.signals`` defines: run each on a synthetic samples x models array
    of the signals the views read (pipeline/signals.py: ``loss`` (N,), ``loss_map``
    (N, grid * grid), the label-only ``agreement`` (N,) in [0, 1], the models on the last
    axis, the target first)."""
    n, m, grid = 16, 4, 4
    rng = np.random.default_rng(0)
    signals = {"loss": rng.uniform(0.05, 0.5, (n, m + 1))}
    signals["loss_map"] = rng.uniform(0.05, 0.5, (n, grid * grid, m + 1))
    # exact (dis)agreement included: hard labels give them often
    signals["agreement"] = np.clip(rng.uniform(-0.2, 1.2, (n, m + 1)), 0.0, 1.0)
    views = {
        str(name): np.asarray(instantiate(spec.transform)(signals[spec.signal]))
        for name, spec in cfg.reference.signals.views.items()
        if spec.signal in signals
    }
    membership = _membership(n, m)
    entries = [k for k, v in cfg.attack.items() if isinstance(v, DictConfig) and "score" in v]
    assert entries, f"conf/attack/{attack_file}.yaml: no entry with a view and a score"
    for name in entries:
        spec = cfg.attack[name]
        assert spec.view in views, f"attack.{name}: view {spec.view!r} not in {list(views)}"
        values = views[spec.view]
        scores = np.asarray(instantiate(spec.score)(values[..., 0], values[..., 1:], membership))
        assert scores.shape == (n,), f"attack.{name}: scores of shape {scores.shape}"
        assert np.isfinite(scores).all(), f"attack.{name}: non-finite scores"


def _check_attack(attack_file: str, entry: str, attack: Attack, tiny: TinyVictim) -> None:
    model = tiny.model
    attack.check_signals(model.provides)
    select = getattr(model, "select_signals", None)
    if select is not None:
        select(attack.requires)
    attack.setup("cpu")
    if attack.trainable:
        attack.fit(_calibration(tiny))
    signals = next(model.iter_signals(tiny.loader, device="cpu"))
    result = attack.score(signals)
    where = f"conf/attack/{attack_file}.yaml: attack.{entry}"
    assert "score" in result, f"{where} returned no 'score'"
    for column, values in result.items():
        assert torch.is_tensor(values) and values.shape == (BATCH,), f"{where}: {column}"
    assert torch.isfinite(result["score"]).all(), f"{where}: non-finite scores"


@pytest.mark.parametrize("attack_file", ATTACKS)
def test_attack_scores_every_sample_once(
    attack_file: str, tiny_victims: TinyVictims, tmp_path: Path
) -> None:
    raw = compose_cfg("run_attack", [f"attack={attack_file}"], root_dir=tmp_path)
    if "_pipeline_" in raw.attack or any(
        isinstance(v, DictConfig) and "score" in v for v in raw.attack.values()
    ):
        # every signal config (conf/reference/signals/) that defines the views it reads
        covering = []
        for path in sorted((CONF_DIR / "reference" / "signals").glob("*.yaml")):
            cfg = compose_cfg(
                "run_attack",
                [f"attack={attack_file}", f"reference/signals={path.stem}"],
                root_dir=tmp_path,
            )
            views = {
                v.view for v in cfg.attack.values() if isinstance(v, DictConfig) and "view" in v
            }
            if views <= set(cfg.reference.signals.views):
                covering.append(cfg)
        assert covering, f"conf/attack/{attack_file}.yaml: no reference/signals has its views"
        for cfg in covering:
            _check_reference_attacks(attack_file, cfg)
        return
    entries = {
        str(k): OmegaConf.to_container(v)
        for k, v in raw.attack.items()
        if isinstance(v, DictConfig) and "_target_" in v
    }
    assert entries, f"conf/attack/{attack_file}.yaml selects no attack"
    composed: dict[str, DictConfig] = {}  # one composition per victim for all its entries
    for entry, spec in entries.items():
        assert issubclass(get_class(spec["_target_"]), Attack), spec["_target_"]
        victim = _attack_victim(attack_file, entry, spec["_target_"])
        tiny = tiny_victims.get(victim)
        # the attack as configured with this victim's data (interpolations resolve there)
        if victim not in composed:
            composed[victim] = _compose_victim(victim, tmp_path, f"attack={attack_file}")
        node = composed[victim].attack[entry]
        module = spec["_target_"].rsplit(".", 1)[0]
        for key, value in ATTACK_SHRINK.get(module, {}).items():
            if key in node:
                node[key] = value
        attack = instantiate(node, name=entry)
        _check_attack(attack_file, entry, attack, tiny)


def test_unpaired_victim_and_attack_name_what_to_add(monkeypatch: pytest.MonkeyPatch) -> None:
    """A victim whose module class no experiment pairs with data, and an attack class no
    experiment runs, fail naming the experiment to add (never a silent skip)."""
    paired = Pairing("embedded/x", "pix2pix", "edges2fashion", frozenset({"pkg.mod.Known"}))
    monkeypatch.setattr(f"{__name__}._pairings", lambda: (paired,))
    with pytest.raises(pytest.fail.Exception, match="no experiment pairs it"):
        _victim_pairing("ssdlite")
    # the same class as a paired victim: its experiment, with this victim chosen
    assert _victim_pairing("pix2pix") == (paired, ("experiment=embedded/x",))
    assert _attack_victim("f", "e", "pkg.mod.Other") == "pix2pix"  # same module
    with pytest.raises(pytest.fail.Exception, match="is run by no experiment"):
        _attack_victim("f", "e", "pkg.other.Novel")


def test_victims_without_an_experiment_take_their_class_kin() -> None:
    """IResNet-18 has no experiment of its own: it is composed with that of a victim of its
    class, with itself chosen, and the data that experiment names."""
    pairing, overrides = _victim_pairing("iresnet18")
    assert overrides[-1] == "victim=iresnet18" and pairing.victim != "iresnet18"
    assert (
        _raw("victim", pairing.victim)["module"]["_target_"]
        == _raw("victim", "iresnet18")["module"]["_target_"]
    )
