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

Which tiny data a victim gets is decided by its LightningModule class (``FAMILIES``) and
which victim an attack reads by the attack's module (``ATTACK_VICTIMS``): a new class that
neither table knows fails with a message naming what to add, never silently skips.
"""

from __future__ import annotations

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
from miabench.victims.base import Signals, Victim
from tests.conftest import CONF_DIR, compose_cfg

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
}


def _image(cfg: DictConfig, g: torch.Generator) -> torch.Tensor:
    side = int(cfg.data.image_size)
    return torch.rand(int(cfg.data.get("channels", 3)), side, side, generator=g)


def _aligned_item(cfg: DictConfig, i: int, g: torch.Generator) -> dict[str, Any]:
    """An item of the pix2pix aligned layout (data/aligned.py): two images in [0, 1]."""
    return {"sample_id": f"train/{i}.png", "input": _image(cfg, g), "target": _image(cfg, g)}


def _segmentation_item(cfg: DictConfig, i: int, g: torch.Generator) -> dict[str, Any]:
    """An item of data/segmentation.py (task: segmentation): an image and a label map."""
    side = int(cfg.data.image_size)
    labels = torch.randint(0, int(cfg.data.num_classes), (side, side), generator=g)
    labels[0, :2] = int(cfg.data.ignore_index)  # unlabelled pixels occur in every layout
    return {"sample_id": f"training/{i}.png", "input": _image(cfg, g), "target": labels}


def _detection_item(cfg: DictConfig, i: int, g: torch.Generator) -> dict[str, Any]:
    """An item of data/wider_face.py: an image, its face boxes (x1, y1, x2, y2) and flags."""
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


def _face_item(cfg: DictConfig, i: int, g: torch.Generator) -> dict[str, Any]:
    """An item of data/faces.py: a face, its member class (-1 for others) and identity."""
    identity = i % int(cfg.data.n_member_identities)
    return {
        "sample_id": f"id{identity:03d}/{i}.png",
        "input": _image(cfg, g),
        "target": torch.tensor(identity),
        "identity": torch.tensor(identity),
    }


def _class_item(cfg: DictConfig, i: int, g: torch.Generator) -> dict[str, Any]:
    """An item of data/fashion_classes.py: an image and its class index."""
    return {
        "sample_id": f"train/{i}.png",
        "input": _image(cfg, g),
        "target": torch.tensor(i % int(cfg.data.num_classes)),
    }


def _segmentation_data(victim: dict[str, Any]) -> str:
    # a one-channel net (PraNet, Inf-Net: structure loss) segments binary masks
    return "fashion_polyps" if victim["module"].get("num_classes") == 1 else "fashion_scenes"


@dataclass(frozen=True)
class Family:
    """How to feed victims of one LightningModule class.

    Attributes:
        data: the ``conf/data`` group whose layout the tiny items follow, or a function of
            the victim's YAML (unresolved) choosing one.
        item: ``(cfg, index, generator) -> item`` in that dataset's item format.
        data_overrides: tiny sizes for the data config.
    """

    data: str | Callable[[dict[str, Any]], str]
    item: Callable[[DictConfig, int, torch.Generator], dict[str, Any]]
    data_overrides: tuple[str, ...] = ("data.image_size=32",)


#: keyed by the ``_target_`` of ``victim.module``
FAMILIES = {
    "miabench.victims.pix2pix.Pix2PixVictim": Family("edges2fashion", _aligned_item),
    "miabench.victims.pix2pixhd.Pix2PixHDVictim": Family("edges2fashion", _aligned_item),
    "miabench.victims.spade.SPADEVictim": Family("edges2fashion", _aligned_item),
    "miabench.victims.segmentation.SegmentationVictim": Family(
        _segmentation_data, _segmentation_item
    ),
    "miabench.victims.detection.DetectionVictim": Family(
        "faces_on_scenes", _detection_item, ("data.image_size=64",)
    ),
    "miabench.victims.face_recognition.FaceRecognitionVictim": Family(
        "fashion_identities",
        _face_item,
        ("data.image_size=16", "data.n_member_identities=2"),
    ),
    "miabench.victims.classifier.ClassifierVictim": Family("fashion_classes", _class_item),
}

#: attack module → the victim config whose signals its attacks read
ATTACK_VICTIMS = {
    "miabench.attacks.reconstruction": "pix2pix",
    "miabench.attacks.predictability.membership_error": "pix2pix",
    "miabench.attacks.segmentation": "upernet50",
    "miabench.attacks.confidence": "resnet18",
    "miabench.attacks.detection": "ssdlite",
    "miabench.attacks.mint": "iresnet_test",
    "miabench.attacks.identity_proximity": "iresnet_test",
    # one module, two victim families: keyed by class
    "miabench.attacks.label_only.LabelOnlyDetection": "ssdlite",
    "miabench.attacks.label_only.LabelOnlySegmentation": "pranet",
}

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


def _family(victim: str) -> Family:
    target = _raw("victim", victim).get("module", {}).get("_target_")
    if target not in FAMILIES:
        pytest.fail(
            f"conf/victim/{victim}.yaml: module class {target!r} has no tiny data; add a "
            "Family for it to FAMILIES in tests/test_contracts.py (the conf/data group whose "
            "items it trains on and an item builder in that layout)"
        )
    return FAMILIES[target]


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
    family = _family(victim)
    data = family.data(_raw("victim", victim)) if callable(family.data) else family.data
    cfg = compose_cfg(
        "train_victim",
        [f"victim={victim}", f"data={data}", *family.data_overrides, *extra],
        root_dir=root,
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
            family = _family(victim)
            g = torch.Generator().manual_seed(0)
            items = [family.item(cfg, i, g) for i in range(2 * BATCH)]
            spec = cfg.data.datamodule.get("collate_fn")
            loader = DataLoader(
                items, batch_size=BATCH, collate_fn=instantiate(spec) if spec else None
            )
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


def _attack_module(attack_file: str, entry: str, spec: dict[str, Any]) -> str:
    module = spec["_target_"]
    if module not in ATTACK_VICTIMS:
        module = module.rsplit(".", 1)[0]
    if module not in ATTACK_VICTIMS:
        pytest.fail(
            f"conf/attack/{attack_file}.yaml: attack.{entry} ({spec['_target_']}) reads no "
            "known victim; add its module to ATTACK_VICTIMS in tests/test_contracts.py with "
            "a victim config whose signals it reads"
        )
    return module


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
    for entry, spec in entries.items():
        module = _attack_module(attack_file, entry, spec)
        assert issubclass(get_class(spec["_target_"]), Attack), spec["_target_"]
        tiny = tiny_victims.get(ATTACK_VICTIMS[module])
        # the attack as configured with this victim's data (interpolations resolve there)
        cfg = _compose_victim(ATTACK_VICTIMS[module], tmp_path, f"attack={attack_file}")
        node = cfg.attack[entry]
        for key, value in ATTACK_SHRINK.get(module, {}).items():
            if key in node:
                node[key] = value
        attack = instantiate(node, name=entry)
        _check_attack(attack_file, entry, attack, tiny)
