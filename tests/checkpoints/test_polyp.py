"""PraNet / Inf-Net state dicts as their authors release them, read by checkpoints.polyp.

The released networks are Res2Net-50 sized (no tiny variant keeps their hard-wired 2048 /
1024 / 512 channels), so each is built once per module and reused.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from miabench.checkpoints.base import CheckpointError
from miabench.checkpoints.polyp import read
from miabench.victims.nets.pranet import PraNet
from miabench.victims.nets.pranet_release import InfNetRelease, PraNetRelease
from miabench.victims.segmentation import SegmentationVictim

ADAM = functools.partial(torch.optim.Adam, lr=1e-4)


def _victim(net: nn.Module) -> SegmentationVictim:
    return SegmentationVictim(net, ADAM, num_classes=1, loss="structure").eval()


def _randomise(net: nn.Module, seed: int) -> nn.Module:
    """Fresh random weights and BN statistics in place (so loading them is visible)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                noise = torch.rand(t.shape, generator=g)
                t.copy_(noise + 0.5 if "running_var" in name else (noise - 0.5) * 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[nn.Module, Path]]:
    """Each authors' network with random weights and its file, saved as their MyTrain.py does."""
    folder = tmp_path_factory.mktemp("released")
    out = {}
    for name, build, file in (
        ("pranet", PraNetRelease, "PraNet-19.pth"),
        ("infnet", InfNetRelease, "Inf-Net-100.pth"),
    ):
        net = _randomise(build(), seed=0)
        torch.save(net.state_dict(), folder / file)
        out[name] = (net, folder / file)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pranet", "infnet"])
def test_release_loads_exactly(name: str, released: dict) -> None:
    source, path = released[name]
    victim = _victim(_randomise(copy.deepcopy(source), seed=1))
    info = read(victim, path)
    assert info.layout == f"{name}_release" and info.details["bn_counters_added"] == 0
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = source((x - victim.mean) / victim.std)
        got = victim.net((x - victim.mean) / victim.std)
        probs = victim(x)
    assert set(got) == set(expected)
    for key in expected:
        maps = [expected[key], got[key]]
        for e, g in zip(*(m if isinstance(m, list) else [m] for m in maps), strict=True):
            assert e.shape == (2, 1, 64, 64) and torch.equal(e, g)
    torch.testing.assert_close(probs, torch.sigmoid(expected["out"]), rtol=0, atol=1e-6)


def test_key_names_and_shapes_are_the_released_ones(released: dict) -> None:
    """Spot checks against lib/PraNet_Res2Net.py, lib/Res2Net_v1b.py and InfNet_Res2Net.py."""
    pranet = released["pranet"][0].state_dict()
    shapes = {
        "resnet.conv1.0.weight": (32, 3, 3, 3),
        "resnet.conv1.6.weight": (64, 32, 3, 3),
        "resnet.bn1.running_var": (64,),
        "resnet.layer1.0.conv1.weight": (104, 64, 1, 1),
        "resnet.layer1.0.convs.2.weight": (26, 26, 3, 3),
        "resnet.layer2.0.downsample.1.weight": (512, 256, 1, 1),
        "resnet.layer4.2.bns.0.weight": (208,),
        "resnet.fc.weight": (1000, 2048),
        "rfb2_1.branch1.1.conv.weight": (32, 32, 1, 3),
        "rfb4_1.branch3.3.conv.weight": (32, 32, 3, 3),
        "rfb3_1.conv_res.bn.running_mean": (32,),
        "agg1.conv_upsample5.conv.weight": (64, 64, 3, 3),
        "agg1.conv5.bias": (1,),
        "ra4_conv2.conv.weight": (256, 256, 5, 5),
        "ra4_conv5.conv.weight": (1, 256, 1, 1),
        "ra2_conv1.conv.weight": (64, 512, 1, 1),
    }
    assert {k: tuple(pranet[k].shape) for k in shapes} == shapes
    infnet = released["infnet"][0].state_dict()
    shapes = {
        "ParDec.conv5.weight": (1, 96, 1, 1),
        "ra4_conv2.conv.weight": (256, 320, 5, 5),
        "ra3_conv2.conv.weight": (64, 128, 3, 3),
        "edge_conv1.conv.weight": (64, 256, 1, 1),
        "edge_conv4.bn.weight": (1,),
    }
    assert {k: tuple(infnet[k].shape) for k in shapes} == shapes
    assert not any(k.startswith("agg1.") for k in infnet)
    assert len(infnet) - len(pranet) == 4 * 6  # edge_conv1-4: conv + 5 BN entries each


@pytest.mark.slow
def test_project_structure_reads_its_own_state_dict(tmp_path: Path) -> None:
    source = _randomise(PraNet(arch="res2net50_26w_4s"), seed=0)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "mine.ckpt")
    victim = _victim(_randomise(copy.deepcopy(source), seed=1))
    assert read(victim, tmp_path / "mine.ckpt").layout == "state_dict"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(victim.net(x)["out"], source(x)["out"])


# -- refusals -------------------------------------------------------------------------


def test_wrong_family_is_refused(released: dict) -> None:
    pranet_file = released["pranet"][1]
    victim = _victim(released["infnet"][0])
    with pytest.raises(CheckpointError) as err:
        read(victim, pranet_file)
    message = str(err.value)
    assert "PraNet-19.pth" in message and "infnet_release" in message
    assert "missing keys: ParDec." in message and "unexpected keys: agg1." in message


def test_release_into_the_project_structure_names_the_fitting_one(released: dict) -> None:
    victim = _victim(PraNet(arch="res2net50_26w_4s"))
    with pytest.raises(CheckpointError, match=r"PraNet-19\.pth.*PraNetRelease"):
        read(victim, released["pranet"][1])


def test_truncated_and_renamed_files_are_refused(released: dict, tmp_path: Path) -> None:
    source, path = released["pranet"]
    victim = _victim(source)
    truncated = tmp_path / "PraNet-19.pth"
    truncated.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=r"PraNet-19\.pth.*pranet_release.*truncated"):
        read(victim, truncated)
    state = torch.load(path, weights_only=True)
    state["ra3_conv4.conv.weights"] = state.pop("ra3_conv4.conv.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointError) as err:
        read(victim, tmp_path / "renamed.pth")
    message = str(err.value)
    assert "renamed.pth" in message
    assert "1 missing keys: ra3_conv4.conv.weight" in message
    assert "1 unexpected keys: ra3_conv4.conv.weights" in message
