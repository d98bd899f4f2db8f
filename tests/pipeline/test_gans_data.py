"""Label→photo readers with pix2pixHD's / SPADE's label encodings, on files the test writes,
and the grey label image the membership error's backbone gets from the victims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from miabench.data.label2photo import ADE20KDontCareDataset, CityscapesLabelIdsDataset
from miabench.victims.nets.multiscale import MultiscaleDiscriminator
from miabench.victims.nets.pix2pixhd_nets import GlobalGenerator
from miabench.victims.pix2pixhd import Pix2PixHDVictim
from tests.pipeline.test_gans import write_ade20k


def write_cityscapes(root: Path, phase: str, n: int, width: int = 32, seed: int = 0) -> None:
    """Cityscapes layout: 2:1 photos, labelIds 0..34 and instanceIds (car instances 26xxx)."""
    rng = np.random.default_rng(seed)
    height = width // 2
    for i in range(n):
        stem = f"city_{i:06d}_000019"
        img_dir = root / "leftImg8bit" / phase / "city"
        gt_dir = root / "gtFine" / phase / "city"
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        labels = rng.integers(0, 35, (height, width)).astype(np.uint8)
        labels[0, 0] = 34  # the largest id pix2pixHD's 35 channels hold
        instances = labels.astype(np.uint16)
        instances[:, : width // 2] = 26000 + i  # one car instance over the left half
        labels[:, : width // 2] = 26
        photo = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
        Image.fromarray(photo).save(img_dir / f"{stem}_leftImg8bit.png")
        Image.fromarray(labels).save(gt_dir / f"{stem}_gtFine_labelIds.png")
        Image.fromarray(instances).save(gt_dir / f"{stem}_gtFine_instanceIds.png")


def test_cityscapes_label_ids_keep_all_35_classes_and_the_aspect_ratio(tmp_path: Path) -> None:
    write_cityscapes(tmp_path, "train", 2)
    ds = CityscapesLabelIdsDataset(
        tmp_path, "train", task="label2photo", boundary=True, image_size=16, aspect_ratio=2.0
    )
    item = ds[0]
    assert item["input"].shape == (36, 8, 16) and item["target"].shape == (3, 8, 16)
    raw = np.array(
        Image.open(tmp_path / "gtFine/train/city/city_000000_000019_gtFine_labelIds.png")
    )
    expected = torch.from_numpy(raw[::2, ::2].astype(np.int64))  # nearest 2x down-sampling
    served = item["input"][:35].argmax(0)
    assert item["input"][:35].sum(0).eq(1).all()  # every pixel has exactly one class
    assert (served == expected).float().mean() > 0.9
    assert item["input"][35].max() == 1  # the instance boundary channel
    with pytest.raises(ValueError, match="aspect_ratio"):
        CityscapesLabelIdsDataset(tmp_path, "train", task="label2photo", aspect_ratio=0)


def test_ade20k_dont_care_order_and_grey_rendering(tmp_path: Path) -> None:
    write_ade20k(tmp_path, "training", 2)
    ds = ADE20KDontCareDataset(tmp_path, "training", task="label2photo", num_classes=4)
    item = ds[0]
    raw = np.array(
        Image.open(tmp_path / "ADEChallengeData2016/annotations/training/ADE_training_00000.png")
    )
    # annotation a >= 1 → channel a - 1; annotation 0 → the last channel
    channels = item["input"].argmax(0).numpy()
    assert np.array_equal(channels, np.where(raw == 0, 3, raw - 1))
    assert item["input"].sum(0).eq(1).all()

    # The victim renders back the annotation file as a grey image (the reference feeds the
    # label PNG itself to the predictability backbone).
    victim = Pix2PixHDVictim(
        GlobalGenerator(4, ngf=4, n_downsampling=2, n_blocks=1),
        MultiscaleDiscriminator(4, num_d=1, ndf=4, n_layers=1),
        torch.optim.Adam,
        torch.optim.Adam,
        label_nc=4,
        vgg_weights="none",
        label_id_shift=1,
    )
    grey = victim.render_input({"input": item["input"][None]})
    assert torch.equal(grey[0, 0] * 255, torch.from_numpy(raw.astype(np.float32)))


def test_ade20k_rejects_annotations_beyond_the_classes(tmp_path: Path) -> None:
    write_ade20k(tmp_path, "training", 1)
    path = tmp_path / "ADEChallengeData2016/annotations/training/ADE_training_00000.png"
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(path)
    ds = ADE20KDontCareDataset(tmp_path, "training", task="label2photo", num_classes=4)
    with pytest.raises(ValueError, match="outside"):
        ds[0]
