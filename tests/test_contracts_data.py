"""Contract tests over ``conf/data``, in the style of ``tests/test_contracts.py``.

Every ``conf/data/*.yaml`` is collected from the folder (files starting with ``_`` are
shared fragments), so a new dataset config is tested the moment its YAML exists:

- tiny data is written in the reader's published layout (the builders of ``tests/data``),
  or, for an embedded dataset, built by the config's own ``prepare`` from a tiny fake
  Fashion-MNIST (or scikit-image's offline samples), at tiny sizes;
- the config's data module, built as the pipeline builds it (``build_datamodule``) with
  ``data.root`` there, draws its split and serves one training batch whose keys, shapes and
  dtypes are what the victims of that task read;
- a broken root (a missing folder, one file removed, a source lacking a file) fails with a
  ``FileNotFoundError`` / ``ValueError`` naming that file or folder.

How to write a dataset's tiny data is decided by its dataset class (``LAYOUTS``): a config
whose class the table does not know fails with a message naming what to add.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from miabench.data.embedded.fashion_mnist import ENV_DIR
from miabench.pipeline.common import build_datamodule
from tests.conftest import CONF_DIR, compose_cfg, write_aligned
from tests.data.test_face_area import MASK, write_celebamask, write_mask_folder
from tests.data.test_faces import write_identity_folders, write_insightface_rec
from tests.data.test_plates import write_ccpd, write_yolo
from tests.data.test_segmentation import write_ade, write_binary, write_cityscapes
from tests.data.test_wider_face import write_wider

DATA = sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml") if p.stem[0] != "_")

#: samples per role and per batch
N = 2


def _write_aligned(root: Path) -> None:
    write_aligned(root, "train", 6, size=32)


def _break_aligned(root: Path) -> str:
    shutil.rmtree(root / "train")
    return str(root / "train")


def _write_ade(root: Path) -> None:
    write_ade(root, n=4)


def _break_ade(root: Path) -> str:
    return _unlink_first(root / "ADEChallengeData2016" / "annotations" / "training")


def _unlink_first(folder: Path) -> str:
    """Remove the first file of ``folder`` (an annotation of an image); return its stem."""
    path = sorted(folder.iterdir())[0]
    path.unlink()
    return path.stem


def _write_cityscapes(root: Path) -> None:
    label = np.zeros((16, 20), np.uint8)
    label[:, 5:10], label[:, 10:] = 7, 26  # road, car: labelIds with a trainId
    write_cityscapes(root, label, np.zeros((16, 20), np.int32))


def _break_cityscapes(root: Path) -> str:
    (root / "gtFine/train/bonn/bonn_000001_000019_gtFine_labelIds.png").unlink()
    return "bonn_000001_000019"


COVID_TRAIN = Path("TrainingSet/LungInfection-Train/Doctor-label")


def _write_covid(root: Path) -> None:
    write_binary(root / COVID_TRAIN / "Imgs", root / COVID_TRAIN / "GT", 4)


def _break_covid(root: Path) -> str:
    return _unlink_first(root / COVID_TRAIN / "GT")


def _write_polyps(root: Path) -> None:
    write_binary(root / "TrainDataset/images", root / "TrainDataset/masks", 4)


def _break_polyps(root: Path) -> str:
    return _unlink_first(root / "TrainDataset" / "masks")


def _break_wider(root: Path) -> str:
    path = root / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    path.unlink()
    return path.name


def _write_celebamask(root: Path) -> None:
    write_celebamask(root, celeba={k: (f"{k + 1:06d}.jpg", 0) for k in range(4)})


def _break_celebamask(root: Path) -> str:
    for path in (root / "CelebAMask-HQ-mask-anno" / "0").glob("00000_*.png"):
        path.unlink()
    return "00000_<part>.png"


def _write_mask_folder(root: Path) -> None:
    write_mask_folder(root, n=4, hair=False)


def _break_mask_folder(root: Path) -> str:
    return _unlink_first(root / "masks" / "train")


def _break_ccpd(root: Path) -> str:
    path = root / "splits" / "train.txt"
    name = path.read_text(encoding="utf-8").split()[0]
    path.write_text(name.replace("-90_90-", "-90-") + "\n", encoding="utf-8")  # tilt malformed
    return "train.txt:1"


def _break_yolo(root: Path) -> str:
    return _unlink_first(root / "labels" / "train") + ".txt"


def _write_identity_folders(root: Path) -> None:
    write_identity_folders(root, n_ids=3, per_id=3)


def _break_root(root: Path) -> str:
    shutil.rmtree(root)
    return str(root)


def _write_rec(root: Path) -> None:
    root.mkdir(parents=True)
    write_insightface_rec(root, n_ids=3, per_id=3)


def _break_rec(root: Path) -> str:
    (root / "train.idx").unlink()
    return "train.idx"


def _image_pair(cfg: DictConfig, batch: dict[str, Any]) -> None:
    """pix2pix-family victims: an input and a target image, 3 x S x S in [0, 1]."""
    side = int(cfg.data.image_size)
    for key in ("input", "target"):
        _unit_images(batch, key, 3, (side, side))


def _segmentation(cfg: DictConfig, batch: dict[str, Any]) -> None:
    """Segmentation victims (task: segmentation): an RGB image and an int64 label map of
    classes below ``num_classes`` or ``ignore_index``; label→photo victims (task:
    label2photo): a one-hot label map (``num_classes`` channels, + 1 with ``boundary``) and
    the photo."""
    image = "target" if cfg.data.task == "label2photo" else "input"
    _unit_images(batch, image, 3, None)
    size = tuple(batch[image].shape[-2:])
    if cfg.data.task == "label2photo":
        channels = int(cfg.data.num_classes) + int(bool(cfg.data.get("boundary", False)))
        _unit_images(batch, "input", channels, size)
        return
    labels = batch["target"]
    n = len(batch["sample_id"])
    assert labels.dtype == torch.int64 and tuple(labels.shape) == (n, *size), labels.shape
    valid = (labels < int(cfg.data.num_classes)) | (labels == int(cfg.data.ignore_index))
    assert ((labels >= 0) & valid).all(), "labels outside the classes"


def _detection(cfg: DictConfig, batch: dict[str, Any]) -> None:
    """Detection victims: letterboxed S x S images and per-image (n, 4) boxes and flags."""
    side = int(cfg.data.image_size)
    _unit_images(batch, "input", 3, (side, side))
    assert len(batch["boxes"]) == len(batch["ignore"]) == len(batch["sample_id"])
    for boxes, ignore in zip(batch["boxes"], batch["ignore"], strict=True):
        assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
        assert ignore.dtype == torch.bool and ignore.shape == boxes.shape[:1]


def _classes(cfg: DictConfig, batch: dict[str, Any]) -> None:
    """Classifiers and face recognition: an image and an int64 class (or identity)."""
    side = int(cfg.data.image_size)
    _unit_images(batch, "input", int(cfg.data.get("channels", 3)), (side, side))
    target = batch["target"]
    n = len(batch["sample_id"])
    assert target.dtype == torch.int64 and tuple(target.shape) == (n,), target.shape


def _unit_images(
    batch: dict[str, Any], key: str, channels: int, size: tuple[int, ...] | None
) -> None:
    """``batch[key]``: one float image per sample, ``channels`` x ``size``, in [0, 1]."""
    x, n = batch[key], len(batch["sample_id"])
    assert x.dtype == torch.float32, f"{key}: {x.dtype}"
    assert x.ndim == 4 and x.shape[:2] == (n, channels), f"{key}: shape {tuple(x.shape)}"
    assert size is None or tuple(x.shape[-2:]) == size, f"{key}: shape {tuple(x.shape)}"
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1, f"{key}: not in [0, 1]"


@dataclass(frozen=True)
class Layout:
    """How to give one dataset class tiny data and break it.

    Attributes:
        check: ``(cfg, batch) -> None``, asserting the batch is what its victims read.
        write: writes tiny data in the published layout under ``data.root`` (not used for
            an embedded config: its ``prepare`` builds the data, from a fake Fashion-MNIST
            in ``$MIABENCH_FASHION_MNIST_DIR`` or scikit-image's samples).
        break_: breaks the written (or built) data and returns what the error must name;
            None: data read from Fashion-MNIST itself, broken by a source lacking a file.
        overrides: tiny sizes for the config.
    """

    check: Callable[[DictConfig, dict[str, Any]], None]
    write: Callable[[Path], None] | None = None
    break_: Callable[[Path], str] | None = None
    overrides: tuple[str, ...] = ("data.image_size=16", "data.load_size=16")


SMALL = Layout.overrides


#: the tiny Cityscapes has two images per phase: the non-members come from val
CITYSCAPES = ("data.image_size=16", "split.nonmembers_from=val")
#: the tiny CCPD has 40x60 images, 3 CCPD-Base train images and 2 ccpd_tilt ones
CCPD = ("data.image_size=64", "data.declared_size=[40,60]", "split.nonmembers_from=ccpd_tilt")
FACES = ("data.image_size=16", "data.n_member_identities=2", "data.n_nonmember_identities=1")

#: keyed by the ``_target_`` of ``data.datamodule.dataset``
LAYOUTS = {
    "miabench.data.aligned.AlignedDataset": Layout(_image_pair, _write_aligned, _break_aligned),
    "miabench.data.embedded.fashion_classes.FashionClassesDataset": Layout(
        _classes, break_=_break_aligned
    ),
    "miabench.data.segmentation.ADE20KDataset": Layout(_segmentation, _write_ade, _break_ade),
    "miabench.data.embedded.composites.FashionScenesDataset": Layout(
        _segmentation, break_=_break_ade
    ),
    "miabench.data.label2photo.ADE20KDontCareDataset": Layout(
        _segmentation, _write_ade, _break_ade
    ),
    "miabench.data.segmentation.CityscapesSegDataset": Layout(
        _segmentation, _write_cityscapes, _break_cityscapes, CITYSCAPES
    ),
    "miabench.data.label2photo.CityscapesLabelIdsDataset": Layout(
        _segmentation, _write_cityscapes, _break_cityscapes, CITYSCAPES
    ),
    "miabench.data.segmentation.CovidSemiSegDataset": Layout(
        _segmentation, _write_covid, _break_covid
    ),
    "miabench.data.segmentation.PolypDataset": Layout(_segmentation, _write_polyps, _break_polyps),
    "miabench.data.face_area.CelebAMaskHQDataset": Layout(
        _segmentation, _write_celebamask, _break_celebamask, (*SMALL, f"data.mask_size={MASK}")
    ),
    # mask_folder and the embedded face_area_on_scenes (32 px: its faces are 16-32 px)
    "miabench.data.face_area.MaskFolderDataset": Layout(
        _segmentation, _write_mask_folder, _break_mask_folder, ("data.image_size=32",)
    ),
    "miabench.data.wider_face.WiderFaceDataset": Layout(
        _detection, write_wider, _break_wider, ("data.image_size=64",)
    ),
    "miabench.data.ccpd.CCPDDataset": Layout(_detection, write_ccpd, _break_ccpd, CCPD),
    "miabench.data.yolo_boxes.YoloBoxesDataset": Layout(
        _detection, write_yolo, _break_yolo, ("data.image_size=64", "split.nonmembers_from=val")
    ),
    "miabench.data.faces.ImageFolderFaces": Layout(
        _classes, _write_identity_folders, _break_root, FACES
    ),
    "miabench.data.faces.RecordFaces": Layout(_classes, _write_rec, _break_rec, FACES),
    "miabench.data.embedded.proxy_faces.FashionIdentities": Layout(
        _classes,
        overrides=(*FACES, "data.n_nonmember_identities=2", "data.images_per_identity=2"),
    ),
}

#: sizes of an embedded build (``data.datamodule.prepare``), applied where the key exists
PREPARE_SHRINK = {"n_train": 6, "n_test": 3, "n_val": 3}

#: the split: N members, N non-members, batches of N
SPLIT = (
    f"split.n_members={N}",
    f"split.n_nonmembers={N}",
    f"data.batch_size={N}",
    f"data.eval_batch_size={N}",
    "data.num_workers=0",
)


def _layout(data: str) -> Layout:
    cfg = compose_cfg("train_victim", [f"data={data}"])
    target = OmegaConf.select(cfg, "data.datamodule.dataset._target_")
    if target not in LAYOUTS:
        pytest.fail(
            f"conf/data/{data}.yaml: dataset class {target!r} has no tiny data; add a Layout "
            "for it to LAYOUTS in tests/test_contracts_data.py (a writer of its published "
            "layout, how to break it, and the batch its victims read)"
        )
    return LAYOUTS[target]


def _embedded(data: str) -> bool:
    """A config whose ``prepare`` builds its data (no root to write)."""
    raw = compose_cfg("train_victim", [f"data={data}"])
    return raw.data.datamodule.get("prepare") is not None


def _compose(data: str, layout: Layout, root: Path) -> DictConfig:
    overrides = [f"data={data}", *SPLIT, *layout.overrides]
    if not _embedded(data):
        overrides.append(f"data.root={root / 'data_root'}")
    cfg = compose_cfg("train_victim", overrides, root_dir=root)
    prepare = cfg.data.datamodule.get("prepare")
    for key, value in PREPARE_SHRINK.items():
        if prepare is not None and key in prepare:
            prepare[key] = value
    return cfg


def _load(cfg: DictConfig) -> dict[str, Any]:
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup()
    return next(iter(datamodule.train_dataloader()))


@pytest.mark.parametrize("data", DATA)
def test_data_config_serves_one_batch_and_names_a_broken_root(
    data: str, fashion_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_DIR, str(fashion_source))
    layout = _layout(data)
    written = layout.write is not None and not _embedded(data)
    cfg = _compose(data, layout, tmp_path / "good")
    if written:
        layout.write(Path(cfg.data.root))
    batch = _load(cfg)
    assert len(batch["sample_id"]) == N, batch["sample_id"]
    layout.check(cfg, batch)

    # broken: a fresh copy of the data, so nothing is served from the first one
    broken = _compose(data, layout, tmp_path / "broken")
    if layout.break_ is not None:
        if written:
            layout.write(Path(broken.data.root))
        else:
            _load(broken)  # build it, then break the build
        named = layout.break_(Path(broken.data.root))
    else:
        source = tmp_path / "source"
        shutil.copytree(fashion_source, source)
        (source / "t10k-labels-idx1-ubyte.gz").unlink()
        monkeypatch.setenv(ENV_DIR, str(source))
        named = "t10k-labels-idx1-ubyte.gz"
    with pytest.raises((FileNotFoundError, ValueError)) as raised:
        _load(broken)
    assert named in str(raised.value), f"conf/data/{data}.yaml: {raised.value!r} names no {named}"


def test_unknown_dataset_class_names_what_to_add(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset class the contract does not know fails naming the table to extend."""
    novel = OmegaConf.create({"data": {"datamodule": {"dataset": {"_target_": "pkg.Novel"}}}})
    monkeypatch.setattr(f"{__name__}.compose_cfg", lambda *args, **kwargs: novel)
    with pytest.raises(pytest.fail.Exception, match="add a Layout for it to LAYOUTS"):
        _layout("novel")
