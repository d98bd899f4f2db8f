"""pix2pix, pix2pixHD and SPADE generators read as their authors save them (issue 28)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from miabench.checkpoints import pix2pix, pix2pixhd, spade
from miabench.checkpoints.base import CheckpointError
from miabench.victims.nets import pix2pixhd_authors, pix2pixhd_nets, spade_authors, spade_nets
from miabench.victims.nets.resnet_gen import ResnetGenerator
from miabench.victims.nets.unet import UnetGenerator
from tests.checkpoints.authors_unet import UnetGenerator as AuthorsUnet
from tests.checkpoints.authors_unet import norm_layer, randomize


def _save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


def test_project_unet_256_has_the_released_keys_and_shapes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # shapes only: the N(0, 0.02) initialisation of 54 M weights would take seconds
    monkeypatch.setattr("miabench.victims.nets.unet.init_weights", lambda module: None)
    with torch.device("meta"):  # shapes only: no memory, no time
        ours = UnetGenerator(3, 3, num_downs=8, ngf=64, norm="batch", dropout=0.5).state_dict()
        theirs = AuthorsUnet(3, 3, 8, 64, norm_layer("batch"), use_dropout=True).state_dict()
    assert len(theirs) == 82  # the released unet_256's entries (43 parameters + BN stats)
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_pix2pix_unet_128_output_equals_the_authors_generator(norm: str, tmp_path: Path) -> None:
    authors = AuthorsUnet(3, 3, 7, 4, norm_layer(norm), use_dropout=True).eval()
    state = randomize(authors)
    if norm == "instance":  # a file from PyTorch < 0.4: stats the authors' loader drops
        state["model.model.1.model.2.running_mean"] = torch.zeros(8)
        state["model.model.1.model.2.running_var"] = torch.ones(8)
    path = _save(state, tmp_path / "latest_net_G.pth")
    module = SimpleNamespace(generator=UnetGenerator(3, 3, 7, 4, norm=norm, dropout=0.5))
    info = pix2pix.read(module, path)
    image = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        expected = authors(image)
        got = module.generator.eval()(image)
    assert torch.allclose(got, expected, atol=1e-6)
    assert info.layout == "pix2pix" and info.details["epoch"] == "latest"
    assert info.details["architecture"] == "unet with num_downs=7"
    dropped = info.details.get("dropped_instance_norm_stats", {}).get("count", 0)
    assert dropped == (2 if norm == "instance" else 0)


def test_pix2pix_resnet_9blocks_in_the_authors_indices(tmp_path: Path) -> None:
    net = ResnetGenerator(3, 3, ngf=4, n_blocks=9, norm="batch", dropout=0.5)
    state = randomize(net)
    # the released resnet_9blocks files: dropout at conv_block.4, last conv at model.26
    assert "model.10.conv_block.6.weight" in state and "model.26.weight" in state
    path = _save(state, tmp_path / "200_net_G.pth")
    # a U-Net victim refuses it and says which structure the file holds
    unet = SimpleNamespace(generator=UnetGenerator(3, 3, 7, 4))
    with pytest.raises(CheckpointError, match=r"200_net_G.pth.*resnet_9blocks.*ResnetGenerator"):
        pix2pix.read(unet, path)
    module = SimpleNamespace(generator=ResnetGenerator(3, 3, ngf=4, n_blocks=9, dropout=0.5))
    info = pix2pix.read(module, path)
    assert info.details["epoch"] == "200" and info.details["architecture"] == "resnet_9blocks"


def test_pix2pix_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    net = UnetGenerator(3, 3, 5, 4)
    state = randomize(net)
    good = _save(state, tmp_path / "latest_net_G.pth")
    truncated = tmp_path / "truncated_net_G.pth"
    truncated.write_bytes(good.read_bytes()[:2000])
    renamed = dict(state)
    renamed["model.model.0.weight_renamed"] = renamed.pop("model.model.0.weight")
    renamed = _save(renamed, tmp_path / "renamed_net_G.pth")
    other = _save({"fc.weight": torch.zeros(2, 3)}, tmp_path / "resnet_classifier.pth")
    module = SimpleNamespace(generator=UnetGenerator(3, 3, 5, 4))
    before = {k: v.clone() for k, v in module.generator.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"truncated_net_G.pth: not a pix2pix .*truncated"):
        pix2pix.read(module, truncated)
    with pytest.raises(
        CheckpointError,
        match=r"renamed_net_G.pth.*missing keys: model.model.0.weight;"
        r".*unexpected keys: model.model.0.weight_renamed",
    ):
        pix2pix.read(module, renamed)
    with pytest.raises(CheckpointError, match=r"resnet_classifier.pth: not a pix2pix.*fc.weight"):
        pix2pix.read(module, other)
    # nothing was half-loaded by the refused files
    after = module.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _to_project_pix2pixhd(state: dict, n_features: int) -> dict:
    out = {}
    for key, value in state.items():
        head, index, rest = key.split(".", 2)
        where = (
            f"features.{index}" if int(index) < n_features else f"head.{int(index) - n_features}"
        )
        out[f"{where}.{rest.replace('conv_block', 'block')}"] = value
    return out


def test_pix2pixhd_global_generator_loads_and_matches_the_project_net(tmp_path: Path) -> None:
    authors = pix2pixhd_authors.GlobalGenerator(4, 3, ngf=4, n_downsampling=2, n_blocks=2).eval()
    state = randomize(authors)
    assert "model.1.weight" in state and "model.10.conv_block.5.weight" in state
    path = _save(state, tmp_path / "latest_net_G.pth")
    module = SimpleNamespace(
        generator=pix2pixhd_authors.GlobalGenerator(4, 3, ngf=4, n_downsampling=2, n_blocks=2)
    )
    info = pix2pixhd.read(module, path)
    assert info.layout == "pix2pixhd"
    # same layers as the project's readable GlobalGenerator, so the same output
    ours = pix2pixhd_nets.GlobalGenerator(4, 3, ngf=4, n_downsampling=2, n_blocks=2).eval()
    ours.load_state_dict(_to_project_pix2pixhd(state, len(ours.features)))
    label = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        assert torch.allclose(module.generator.eval()(label), ours(label), atol=1e-6)
    # the project's net refuses the authors' names and says which structure loads them
    with pytest.raises(CheckpointError, match=r"pix2pixhd_authors.GlobalGenerator"):
        pix2pixhd.read(SimpleNamespace(generator=ours), path)


def test_pix2pixhd_local_enhancer_keys(tmp_path: Path) -> None:
    kwargs = dict(ngf=2, n_downsampling=2, n_blocks=1, n_blocks_local=1)
    authors = pix2pixhd_authors.LocalEnhancer(5, 3, **kwargs)
    state = randomize(authors)
    assert {"model1_1.1.weight", "model1_2.0.conv_block.1.weight", "model1_2.5.weight"} <= set(
        state
    )
    path = _save(state, tmp_path / "latest_net_G.pth")
    module = SimpleNamespace(generator=pix2pixhd_authors.LocalEnhancer(5, 3, **kwargs))
    pix2pixhd.read(module, path)
    ours = pix2pixhd_nets.LocalEnhancer(5, 3, **kwargs).eval()
    n = len(ours.global_generator.features)
    mapped = {}
    for key, value in state.items():
        name, rest = key.split(".", 1)
        rest = rest.replace("conv_block", "block")
        if name == "model":
            mapped[f"global_generator.features.{rest}"] = value
        else:
            mapped[f"{'front' if name.endswith('_1') else 'back'}.0.{rest}"] = value
    ours.load_state_dict(mapped)
    assert n == len(authors.model)
    label = torch.rand(1, 5, 16, 16)
    with torch.no_grad():
        assert torch.allclose(module.generator.eval()(label), ours(label), atol=1e-6)
    with pytest.raises(CheckpointError, match=r"LocalEnhancer"):
        small = pix2pixhd_authors.GlobalGenerator(5, 3, ngf=4, n_downsampling=2, n_blocks=1)
        pix2pixhd.read(SimpleNamespace(generator=small), path)


_SPADE_NAMES = {
    "mlp_shared": "shared",
    "mlp_gamma": "gamma",
    "mlp_beta": "beta",
    "param_free_norm": "norm",
    "G_middle_": "middle_",
}


def _to_project_spade(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        for a, b in _SPADE_NAMES.items():
            key = key.replace(a, b)
        if key.startswith("up_"):
            key = "ups." + key[len("up_") :]
        for a, b in {
            ".weight_orig": ".parametrizations.weight.original",
            ".weight_u": ".parametrizations.weight.0._u",
            ".weight_v": ".parametrizations.weight.0._v",
        }.items():
            key = key.replace(a, b)
        out[key] = value
    return out


def test_spade_generator_spectral_norm_keys_and_output(tmp_path: Path) -> None:
    kwargs = dict(ngf=2, crop_size=32, hidden=8)
    authors = spade_authors.SPADEGenerator(6, 3, **kwargs).eval()
    state = randomize(authors)
    for key in (
        "G_middle_0.conv_0.weight_orig",
        "G_middle_0.conv_0.weight_u",
        "G_middle_0.conv_0.weight_v",
        "up_0.conv_s.weight_orig",
        "head_0.norm_0.mlp_shared.0.weight",
        "up_3.norm_s.param_free_norm.running_mean",
    ):
        assert key in state, key
    path = _save(state, tmp_path / "latest_net_G.pth")
    module = SimpleNamespace(generator=spade_authors.SPADEGenerator(6, 3, **kwargs), encoder=None)
    assert spade.read(module, path).layout == "spade"
    ours = spade_nets.SPADEGenerator(6, 3, **kwargs).eval()
    ours.load_state_dict(_to_project_spade(state))
    seg = torch.nn.functional.one_hot(torch.randint(0, 6, (1, 32, 32)), 6).permute(0, 3, 1, 2)
    with torch.no_grad():
        got, expected = module.generator.eval()(seg.float()), ours(seg.float())
    assert torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(CheckpointError, match=r"spade_authors.SPADEGenerator"):
        spade.read(SimpleNamespace(generator=ours, encoder=None), path)
