"""UperNet / HRNetV2 checkpoints as CSAIL and smp save them, read by checkpoints.segmentation."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from miabench.checkpoints.base import CheckpointError
from miabench.checkpoints.segmentation import read
from miabench.victims.nets.csail_semseg import CSAILHRNetV2, CSAILResnet, CSAILUPerNet
from miabench.victims.nets.seg_backbones import UPerNet
from miabench.victims.segmentation import SegmentationVictim

SGD = functools.partial(torch.optim.SGD, lr=0.01)


def _victim(net: nn.Module, k: int) -> SegmentationVictim:
    return SegmentationVictim(net, SGD, num_classes=k).eval()


def _randomise(net: nn.Module, seed: int) -> nn.Module:
    """Fresh random weights *and* BN statistics in place (so loading them is visible)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                noise = torch.rand(t.shape, generator=g)
                t.copy_(noise + 0.5 if "running_var" in name else (noise - 0.5) * 0.2)
    return net.eval()


def _pair(build: Callable[[], nn.Module], k: int) -> tuple[nn.Module, SegmentationVictim]:
    """A source network with random weights and a victim holding a differently random copy."""
    source = _randomise(build(), seed=0)
    return source, _victim(_randomise(copy.deepcopy(source), seed=1), k)


def _write_csail(net: nn.Module, folder: Path, epoch: int) -> Path:
    """The release layout: two state dicts, as CSAIL's train.py ``checkpoint()`` saves them."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.encoder.state_dict(), folder / f"encoder_epoch_{epoch}.pth")
    torch.save(net.decoder.state_dict(), folder / f"decoder_epoch_{epoch}.pth")
    return folder


def _same_output(source: nn.Module, victim: SegmentationVictim, size: int = 64) -> None:
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = source((x - victim.mean) / victim.std)
        assert torch.equal(victim.net((x - victim.mean) / victim.std), expected)
        probs = victim(x)
    logits = F.interpolate(expected, size=(size, size), mode="bilinear", align_corners=False)
    torch.testing.assert_close(probs, logits.softmax(1), rtol=0, atol=1e-6)


TINY_UPERNET = functools.partial(CSAILUPerNet, "resnet18", 5, decoder_channels=16, ppm_channels=16)
TINY_HRNET = functools.partial(CSAILHRNetV2, "hrnet_w4", 5, stage_modules=(1, 1, 1), blocks=1)


@pytest.mark.parametrize("build", [TINY_UPERNET, TINY_HRNET], ids=["upernet", "hrnetv2"])
def test_csail_pair_loads_exactly(tmp_path: Path, build: Callable[[], nn.Module]) -> None:
    source, victim = _pair(build, 5)
    folder = _write_csail(source, tmp_path / "ade20k-release", epoch=30)

    info = read(victim, folder)

    assert info.layout == "csail_semseg"
    assert info.details["epoch"] == 30 and info.details["bn_counters_added"] == 0
    assert set(info.details["files"]) == {"encoder_epoch_30.pth", "decoder_epoch_30.pth"}
    _same_output(source, victim)
    # the encoder file's own path names the same pair, with the same content hash
    _randomise(victim.net, seed=2)
    assert read(victim, folder / "encoder_epoch_30.pth").sha256 == info.sha256
    _same_output(source, victim)


def test_csail_files_without_bn_counters_load(tmp_path: Path) -> None:
    """Files from PyTorch < 0.4.1 lack num_batches_tracked; the counters are filled in."""
    source, victim = _pair(TINY_HRNET, 5)
    folder = _write_csail(source, tmp_path, epoch=1)
    state = torch.load(folder / "encoder_epoch_1.pth", weights_only=True)
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, folder / "encoder_epoch_1.pth")
    info = read(victim, folder)
    assert info.details["bn_counters_added"] == len(state) - len(old) > 0
    _same_output(source, victim)


def test_csail_key_names_and_shapes_are_the_released_ones() -> None:
    """Spot checks against mit_semseg/models (resnet.py, hrnet.py, models.py)."""
    with torch.device("meta"):  # shapes only: nothing allocated or initialised
        enc = CSAILResnet("resnet50").state_dict()
        up = CSAILUPerNet("resnet18", 150).decoder.state_dict()  # fc_dim 512, fpn_dim 512
        hr = CSAILHRNetV2("hrnet_w48", 150)
    assert tuple(enc["conv1.weight"].shape) == (64, 3, 3, 3)
    assert tuple(enc["conv3.weight"].shape) == (128, 64, 3, 3)
    assert tuple(enc["bn3.running_mean"].shape) == (128,)
    assert tuple(enc["layer1.0.conv1.weight"].shape) == (64, 128, 1, 1)
    assert tuple(enc["layer1.0.downsample.0.weight"].shape) == (256, 128, 1, 1)
    assert tuple(enc["layer4.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    assert not any(k.startswith("fc.") for k in enc)
    assert tuple(up["ppm_conv.3.0.weight"].shape) == (512, 512, 1, 1)
    assert tuple(up["ppm_last_conv.0.weight"].shape) == (512, 512 + 4 * 512, 3, 3)
    assert tuple(up["fpn_in.0.0.weight"].shape) == (512, 64, 1, 1)
    assert tuple(up["fpn_out.2.0.0.weight"].shape) == (512, 512, 3, 3)
    assert tuple(up["conv_last.0.0.weight"].shape) == (512, 4 * 512, 3, 3)
    assert tuple(up["conv_last.1.bias"].shape) == (150,)
    h = hr.encoder.state_dict()
    assert tuple(h["conv2.weight"].shape) == (64, 64, 3, 3)
    assert tuple(h["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert tuple(h["transition1.0.0.weight"].shape) == (48, 256, 3, 3)
    assert tuple(h["transition1.1.0.0.weight"].shape) == (96, 256, 3, 3)
    assert tuple(h["transition3.3.0.0.weight"].shape) == (384, 192, 3, 3)
    assert tuple(h["stage3.3.branches.2.3.conv2.weight"].shape) == (192, 192, 3, 3)
    assert tuple(h["stage4.2.fuse_layers.0.3.0.weight"].shape) == (48, 384, 1, 1)
    assert tuple(h["stage4.2.fuse_layers.3.0.2.0.weight"].shape) == (384, 48, 3, 3)
    assert tuple(h["stage4.2.fuse_layers.3.0.0.0.weight"].shape) == (48, 48, 3, 3)
    assert not any(k.startswith(("stage5", "incre", "final", "classifier")) for k in h)
    d = hr.decoder.state_dict()
    assert tuple(d["cbr.0.weight"].shape) == (180, 720, 3, 3)
    assert tuple(d["conv_last.weight"].shape) == (150, 180, 1, 1)


def test_csail_stem_is_csails_function() -> None:
    """timm's deep stem under CSAIL's names computes relu(bn(conv)) x3 + maxpool, as CSAIL."""
    enc = _randomise(CSAILResnet("resnet18"), seed=3)
    x = torch.randn(1, 3, 32, 32)
    s = enc.state_dict()

    def cbr(x: torch.Tensor, i: int, stride: int) -> torch.Tensor:
        x = F.conv2d(x, s[f"conv{i}.weight"], stride=stride, padding=1)
        bn = [s[f"bn{i}.{n}"] for n in ("running_mean", "running_var", "weight", "bias")]
        return F.relu(F.batch_norm(x, *bn, training=False))

    stem = F.max_pool2d(cbr(cbr(cbr(x, 1, 2), 2, 1), 3, 1), 3, 2, 1)
    with torch.no_grad():
        torch.testing.assert_close(enc.layer1(stem), enc(x)[0], rtol=0, atol=1e-6)


def test_smp_save_pretrained_folder_and_plain_state_dict(tmp_path: Path) -> None:
    build = functools.partial(UPerNet, "resnet18", 3, "none", 16)
    source, victim = _pair(build, 3)
    source.model.save_pretrained(tmp_path / "smp")
    assert {p.name for p in (tmp_path / "smp").iterdir()} >= {"config.json", "model.safetensors"}
    info = read(victim, tmp_path / "smp")
    assert info.layout == "smp_pretrained" and info.details["structure"] == "UPerNet"
    _same_output(source, victim)

    torch.save(source.model.state_dict(), tmp_path / "upernet.pth")
    _randomise(victim.net, seed=2)
    info = read(victim, tmp_path / "upernet.pth")
    assert info.layout == "state_dict"
    _same_output(source, victim)


# -- refusals -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nets() -> dict[str, nn.Module]:
    """One tiny network of each structure; the refusals below never load into them."""
    return {
        "csail": TINY_UPERNET(),
        "hrnet": TINY_HRNET(),
        "smp": UPerNet("resnet18", 3, "none", 16),
    }


def test_truncated_files_are_refused(tmp_path: Path, nets: dict[str, nn.Module]) -> None:
    folder = _write_csail(nets["hrnet"], tmp_path / "csail", epoch=2)
    enc = folder / "encoder_epoch_2.pth"
    enc.write_bytes(enc.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"encoder_epoch_2\.pth.*truncated"):
        read(_victim(nets["hrnet"], 5), folder)

    nets["smp"].model.save_pretrained(tmp_path / "smp")
    weights = tmp_path / "smp" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        read(_victim(nets["smp"], 3), tmp_path / "smp")


def test_a_renamed_key_is_named_with_its_file(tmp_path: Path, nets: dict[str, nn.Module]) -> None:
    folder = _write_csail(_randomise(copy.deepcopy(nets["hrnet"]), seed=4), tmp_path, epoch=5)
    dec = torch.load(folder / "decoder_epoch_5.pth", weights_only=True)
    dec["conv_last.weights"] = dec.pop("conv_last.weight")
    torch.save(dec, folder / "decoder_epoch_5.pth")
    victim = _victim(nets["hrnet"], 5)
    before = {k: v.clone() for k, v in victim.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        read(victim, folder)
    message = str(err.value)
    assert "decoder_epoch_5.pth" in message and "csail_semseg" in message
    assert "missing keys: conv_last.weight" in message
    assert "unexpected keys: conv_last.weights" in message
    # the encoder was not loaded either: nothing half-loaded
    assert all(torch.equal(before[k], v) for k, v in victim.state_dict().items())


def test_wrong_family_files_are_refused(tmp_path: Path, nets: dict[str, nn.Module]) -> None:
    # a CSAIL release for a victim built with smp: the error says which structure reads it
    folder = _write_csail(nets["csail"], tmp_path / "csail", epoch=1)
    with pytest.raises(CheckpointError, match="CSAILUPerNet"):
        read(_victim(nets["smp"], 3), folder)
    # an HRNetV2 decoder beside an UperNet encoder
    torch.save(nets["hrnet"].decoder.state_dict(), folder / "decoder_epoch_1.pth")
    with pytest.raises(CheckpointError, match=r"decoder_epoch_1\.pth.*unexpected keys: cbr"):
        read(_victim(nets["csail"], 5), folder)
    # an smp folder of another model class
    import segmentation_models_pytorch as smp  # noqa: PLC0415

    smp.Unet("resnet18", encoder_weights=None, classes=3).save_pretrained(tmp_path / "unet")
    with pytest.raises(CheckpointError, match="_model_class is 'Unet'"):
        read(_victim(nets["smp"], 3), tmp_path / "unet")
    # only a decoder: its encoder is named as missing
    (folder / "encoder_epoch_1.pth").unlink()
    with pytest.raises(CheckpointError, match="encoder_epoch_1.pth is missing"):
        read(_victim(nets["csail"], 5), folder / "decoder_epoch_1.pth")
