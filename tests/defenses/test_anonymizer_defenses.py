"""Defenses on the anonymization audit's victims: augmentation moves boxes and masks with
the image, early stopping watches the victim's own metric, DP-SGD steps a detector and a
U-Net (torchvision residual blocks made out-of-place) and survives empty detection batches."""

from __future__ import annotations

import pytest
import torch
from opacus import GradSampleModule
from torchvision.models import mobilenetv3, resnet
from torchvision.transforms import v2

from miabench.defenses.augmentation import PairedTransform
from miabench.defenses.dpsgd import DPSGD, EmptySafeCollate
from miabench.defenses.out_of_place import OutOfPlaceBasicBlock, make_residuals_out_of_place
from miabench.pipeline.keys import victim_key
from miabench.victims.detection import DetectionVictim, build_ssdlite
from tests.conftest import compose_cfg


def _detection_item() -> dict:
    return {
        "sample_id": "a",
        "input": torch.rand(3, 32, 32),
        "boxes": torch.tensor([[2.0, 4.0, 10.0, 12.0], [20.0, 20.0, 30.0, 28.0]]),
        "ignore": torch.tensor([False, True]),
    }


def test_boxes_move_with_a_flip_and_leave_with_a_crop() -> None:
    item = _detection_item()
    out = PairedTransform(v2.RandomHorizontalFlip(p=1.0))(item)
    assert torch.equal(out["input"], item["input"].flip(-1))
    # x -> 32 - x: the boxes follow the mirrored picture, the flags stay with their box
    assert torch.equal(
        out["boxes"], torch.tensor([[22.0, 4.0, 30.0, 12.0], [2.0, 20.0, 12.0, 28.0]])
    )
    assert torch.equal(out["ignore"], item["ignore"]) and out["sample_id"] == "a"
    # a crop of the top-left 16x16 corner keeps the first box only (with its flag)
    corner = PairedTransform(lambda *xs: tuple(v2.functional.crop(x, 0, 0, 16, 16) for x in xs))
    cut = corner(item)
    assert torch.equal(cut["boxes"], torch.tensor([[2.0, 4.0, 10.0, 12.0]]))
    assert torch.equal(cut["ignore"], torch.tensor([False]))
    assert cut["input"].shape == (3, 16, 16)


def test_label_maps_flip_nearest_and_other_items_are_refused() -> None:
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[:, :2] = 1
    out = PairedTransform(v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.RandomRotation(20)]))(
        {"sample_id": "m", "input": torch.rand(3, 8, 8), "target": mask}
    )
    assert out["target"].dtype == torch.long
    assert set(out["target"].unique().tolist()) <= {0, 1}
    assert out["target"][:, :2].sum() < out["target"][:, 6:].sum()  # the face moved right
    with pytest.raises(KeyError, match="target.*boxes"):
        PairedTransform(v2.RandomHorizontalFlip())({"input": torch.rand(3, 4, 4)})


@pytest.mark.parametrize(
    ("overrides", "monitor"),
    [
        (["experiment=anonymization/plates_ssdlite"], "val/loss"),
        (["experiment=anonymization/face_area_unet"], "val/loss"),
        ([], "val/l1"),  # the pix2pix default names none: val/l1 as before
    ],
)
def test_early_stopping_monitors_the_victims_metric(overrides: list[str], monitor: str) -> None:
    cfg = compose_cfg("train_victim", [*overrides, "defense=early_stopping"])
    assert cfg.defense.training.monitor == monitor


def test_victim_monitor_is_not_part_of_the_victim_key() -> None:
    cfg = compose_cfg("train_victim", ["experiment=anonymization/plates_ssdlite"])
    key = victim_key(cfg, "sha")
    assert "monitor" not in key["victim"]
    cfg.victim.monitor = "val/anonymization_recall"
    assert victim_key(cfg, "sha")["key"] == key["key"]


def _tiny_detector() -> DetectionVictim:
    torch.manual_seed(0)
    detector = build_ssdlite(32, weights="none", width_mult=0.25)
    return DetectionVictim(detector, optimizer=torch.optim.SGD)


def test_dpsgd_one_step_on_ssdlite() -> None:
    victim = _tiny_detector()
    defense = DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    defense.prepare_module(victim)
    fixes = defense.module_fixes["detector"]
    assert any("residual block(s) made out-of-place" in f for f in fixes)
    assert not any(type(m) is mobilenetv3.InvertedResidual for m in victim.modules())
    gsm = GradSampleModule(victim.detector, batch_first=True, loss_reduction="mean")
    batch = {
        "input": torch.rand(2, 3, 32, 32),
        "boxes": [torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.tensor([[8.0, 2.0, 30.0, 14.0]])],
        "ignore": [torch.tensor([False]), torch.tensor([False])],
    }
    victim.train()
    losses = victim.detector(list(batch["input"]), victim.targets(batch))
    sum(losses.values()).backward()  # refused before: `result += input` on a hooked view
    trainable = [p for p in victim.detector.parameters() if p.requires_grad]
    assert all(p.grad_sample is not None and p.grad_sample.shape[0] == 2 for p in trainable)
    assert all(torch.isfinite(p.grad_sample).all() for p in trainable)
    gsm.remove_hooks()


def test_out_of_place_blocks_compute_the_same_function() -> None:
    torch.manual_seed(0)
    net = resnet.resnet18(num_classes=3).eval()
    x = torch.rand(2, 3, 32, 32)
    before = net(x)
    keys = list(net.state_dict())
    assert make_residuals_out_of_place(net) == 8
    assert all(type(m) is not resnet.BasicBlock for m in net.modules())
    assert any(isinstance(m, OutOfPlaceBasicBlock) for m in net.modules())
    assert list(net.state_dict()) == keys  # same parameters, same names
    assert torch.allclose(net(x), before, atol=1e-6)


def test_empty_detection_batch_is_an_image_without_boxes() -> None:
    collate = EmptySafeCollate(
        lambda items: {
            "sample_id": [i["sample_id"] for i in items],
            "input": torch.stack([i["input"] for i in items]),
            "boxes": [i["boxes"] for i in items],
            "ignore": [i["ignore"] for i in items],
        }
    )
    collate([_detection_item(), _detection_item()])
    empty = collate([])
    assert empty["input"].shape == (1, 3, 32, 32)
    assert [b.shape for b in empty["boxes"]] == [(0, 4)]
    assert [i.shape for i in empty["ignore"]] == [(0,)]
    victim = _tiny_detector()
    DPSGD(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5).prepare_module(victim)  # GroupNorm
    victim.train()
    losses = victim.detector(list(empty["input"]), victim.targets(empty))  # a negative image
    assert torch.isfinite(sum(losses.values()))
