"""Reference signals of anonymizers on a tiny detector and a tiny binary segmenter: the
family signals where the attacker sees them, the hard-label agreement always, and the
agreement's transforms finite at exact (dis)agreement."""

from __future__ import annotations

import functools

import numpy as np
import torch
from hydra.utils import instantiate

from miabench.attacks.label_only import LabelOnlyDetection, LabelOnlySegmentation
from miabench.attacks.reference.signals import (
    detection_signals,
    segmentation_signals,
    with_label_agreement,
)
from miabench.attacks.reference.transforms import likelihood_from_share, logit_from_share
from miabench.defenses.truncation import BoxesOnly, quantize
from miabench.pipeline.attack import attacker_signals
from miabench.victims.detection import DetectionVictim, build_ssdlite
from miabench.victims.segmentation import SegmentationVictim
from tests.conftest import compose_cfg


def _detection_batches() -> list[dict]:
    torch.manual_seed(0)
    return [
        {
            "sample_id": ["a", "b"],
            "input": torch.rand(2, 3, 32, 32),
            "boxes": [torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.zeros(0, 4)],
            "ignore": [torch.tensor([False]), torch.zeros(0, dtype=torch.bool)],
        }
    ]


def _signals(victim, batches, view):  # noqa: ANN001, ANN202
    return [attacker_signals(s, view) for s in victim.iter_signals(batches, device="cpu")]


def test_detector_signals_with_and_without_boxes_only() -> None:
    torch.manual_seed(0)
    victim = DetectionVictim(build_ssdlite(32, weights="none", width_mult=0.25), torch.optim.SGD)
    attack = LabelOnlyDetection(shift=1, score_threshold=0.0)  # every box counts
    fn = functools.partial(
        with_label_agreement, family=detection_signals, attack=attack, needs=["loss"]
    )
    (raw,) = _signals(victim, _detection_batches(), None)
    full = fn(raw)
    assert set(full) == {"loss", "confidence", "agreement"}
    assert torch.equal(full["agreement"], attack.score(raw)["score"])
    assert ((full["agreement"] >= 0) & (full["agreement"] <= 1)).all()
    # boxes only: no loss reaches the attacker, the agreement still does
    (seen,) = _signals(victim, _detection_batches(), BoxesOnly(score_threshold=0.0))
    hard = fn(seen)
    assert set(hard) == {"agreement"}
    assert torch.allclose(hard["agreement"], full["agreement"])


class _Conv(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_segmenter_signals_on_soft_and_hard_masks() -> None:
    torch.manual_seed(0)
    victim = SegmentationVictim(_Conv(), torch.optim.SGD, num_classes=1, loss="bce")
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, 4:12, 4:12] = 1
    batches = [{"sample_id": ["a", "b"], "input": torch.rand(2, 3, 16, 16), "target": target}]
    attack = LabelOnlySegmentation(shift=1)
    fn = functools.partial(
        with_label_agreement,
        family=functools.partial(segmentation_signals, grid=2),
        attack=attack,
        needs=["output", "target"],
    )
    (soft,) = _signals(victim, batches, None)
    (hard,) = _signals(victim, batches, functools.partial(quantize, levels=2))
    a, b = fn(soft), fn(hard)
    assert set(a) == set(b) == {"loss", "confidence", "loss_map", "agreement"}
    # the agreement reads hard masks only: rounding the output changes nothing
    assert torch.allclose(a["agreement"], b["agreement"])
    assert not torch.allclose(a["loss"], b["loss"])


def test_agreement_transforms_are_finite_and_ordered() -> None:
    share = np.array([0.0, 0.25, 0.5, 1.0])
    logit = logit_from_share(share)
    assert np.isfinite(logit).all() and (np.diff(logit) > 0).all()
    assert logit[2] == 0.0
    assert (likelihood_from_share(share) > 0).all() and likelihood_from_share(share)[-1] == 1.0


def test_anonymizer_reference_configs_compose_and_build() -> None:
    for experiment, family in (
        ("reference_plates_ssdlite", "detection_signals"),
        ("reference_face_area_unet", "segmentation_signals"),
    ):
        cfg = compose_cfg("run_attack", [f"experiment=anonymization/{experiment}"])
        assert cfg.reference.n_models == 4
        fn = instantiate(cfg.reference.signals.compute)
        assert fn.keywords["family"].func.__name__ == family
        views = cfg.reference.signals.views
        assert cfg.attack.lira_online_labels.view in views
        assert views[cfg.attack.label_only.view].signal == "agreement"
