"""prefetch_weights fills torch hub's cache from a (local) server; loading then works offline."""

from __future__ import annotations

import hashlib
import threading
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from miabench.prefetch_weights import _package_configs, _targets, backbones, backbones_in, main
from miabench.utils.pretrained import ATTRIBUTE, SmpEncoderWeights, TorchvisionWeights
from tests.conftest import CONF_DIR


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, ThreadingHTTPServer]]:
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, httpd
    httpd.shutdown()
    httpd.server_close()


BACKBONE_KEYS = ("arch", "backbone", "encoder")


def _named_backbones(node: object) -> Iterator[str]:
    """Every arch/backbone/encoder a config file names (MINT auditor archs are not backbones)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in BACKBONE_KEYS and isinstance(value, str):
                # an interpolation (`${attack.membership_error.arch}`) names the backbone of
                # another entry, which is checked where it is written
                if value not in ("mlp", "cnn") and not value.startswith("${"):
                    yield value
            yield from _named_backbones(value)
    elif isinstance(node, list):
        for value in node:
            yield from _named_backbones(value)


def test_the_list_is_derived_from_the_configs() -> None:
    by_name = {b.name: b for b in backbones()}
    # the loaders of each library, as conf/ uses them
    assert "victim=ssdlite" in by_name["torchvision:mobilenet_v3_large.DEFAULT"].used_by
    assert "attack=membership_error" in by_name["torchvision:wide_resnet50_2.IMAGENET1K_V1"].used_by
    assert "victim=hrnetv2_w48" in by_name["timm:hrnet_w48"].used_by
    assert "victim=upernet101" in by_name["smp:resnet101.imagenet"].used_by
    assert {"victim=pix2pixhd", "victim=spade"} <= set(
        by_name["torchvision:vgg19.IMAGENET1K_V1"].used_by
    )
    # an experiment's own choice (the face-area DeepLabV3+ on a ResNet-18 encoder) is listed
    assert "experiment=embedded/face_area_deeplabv3plus" in by_name["smp:resnet18.imagenet"].used_by
    # every backbone a config file names is there, under some library
    named = set()
    for group in ("victim", "attack", "experiment"):
        for path in (CONF_DIR / group).rglob("*.yaml"):
            named.update(_named_backbones(yaml.safe_load(path.read_text())))
    named -= {n for n in named if n.endswith("_test") or n.startswith("test_")}
    covered = {
        getattr(b.weights, "arch", None) or getattr(b.weights, "encoder", None) for b in backbones()
    }
    assert named - covered == set()


def test_every_target_taking_weights_and_a_backbone_declares_them() -> None:
    """A config target with ``weights`` and a backbone name is a loader: it must say which
    ImageNet weights it loads, or the prefetch list would silently miss them."""
    for label, cfg in _package_configs():
        for target, node in _targets(cfg):
            names = [node._get_node(k)._value() for k in BACKBONE_KEYS if k in node]
            if "weights" in node and any(isinstance(n, str) for n in names):
                assert hasattr(target, ATTRIBUTE), f"{label}: {node._target_} declares no weights"


def test_a_new_config_is_the_only_thing_to_add() -> None:
    """A config using a declared loader adds its weights; defaults and interpolations as the
    loader's signature and the composed config give them."""
    new = {
        "module": {
            "detector": {
                "_target_": "miabench.victims.detection.build_fcos",
                "backbone": "resnet50",
            },
            "net": {"_target_": "miabench.victims.nets.seg_backbones.SmpSegmenter"},  # default
            "features": {
                "_target_": "miabench.attacks.predictability.backbone.FeatureBackbone",
                "arch": "${elsewhere.arch}",  # unresolvable alone: left to where it is written
            },
        }
    }
    found = {b.weights: b.used_by for b in backbones_in([("victim=new", new)])}
    assert found == {
        TorchvisionWeights("resnet50", "DEFAULT"): ("victim=new",),
        SmpEncoderWeights("resnet34"): ("victim=new",),
    }
    resolved = {**new, "elsewhere": {"arch": "resnet101"}}
    found = {b.weights for b in backbones_in([("experiment=x", resolved)])}
    assert TorchvisionWeights("resnet101", "IMAGENET1K_V1") in found


def test_prefetch_then_offline_load(
    server: tuple[str, Path, ThreadingHTTPServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    base, served, httpd = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # A random state_dict of the real architecture, named as torchvision names its files
    # (<arch>-<first 8 hex of its SHA-256>.pth, checked by torch.hub on load).
    state = torchvision.models.get_model("mobilenet_v3_large", weights=None).state_dict()
    blob = served / "tmp.pth"
    torch.save(state, blob)
    name = f"mobilenet_v3_large-{hashlib.sha256(blob.read_bytes()).hexdigest()[:8]}.pth"
    blob.rename(served / name)
    enum = torchvision.models.get_model_weights("mobilenet_v3_large").DEFAULT
    monkeypatch.setattr(enum.value, "url", f"{base}/{name}")

    assert main(["--only", "torchvision:mobilenet_v3_large.DEFAULT"]) == 0
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / name
    assert f"→ {cached}" in capsys.readouterr().out
    assert cached.read_bytes() == (served / name).read_bytes()

    # Compute node: no network at all. The victim's own loader must find the cached file.
    httpd.shutdown()

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("no network on this node")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    from miabench.victims.detection import classifier_backbone

    model, info = classifier_backbone("mobilenet_v3_large", "imagenet")
    assert info == {"weights": f"imagenet:{enum}"}
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_failed_download_is_reported_and_exit_status_is_1(
    server: tuple[str, Path, ThreadingHTTPServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    base, _, _ = server
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    enum = torchvision.models.get_model_weights("vgg19").IMAGENET1K_V1
    monkeypatch.setattr(enum.value, "url", f"{base}/vgg19-00000000.pth")  # 404
    assert main(["--only", "torchvision:vgg19.IMAGENET1K_V1"]) == 1
    assert "FAILED torchvision:vgg19.IMAGENET1K_V1" in capsys.readouterr().out


def test_unknown_name_is_an_error() -> None:
    with pytest.raises(SystemExit):
        main(["--only", "torchvision:nope"])
