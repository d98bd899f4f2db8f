"""Optional extras: a missing one is named, with the pip command, where it is needed."""

from __future__ import annotations

import importlib
import sys

import pytest

from miabench.utils import extras


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` unimportable, as when their extra is not installed."""
    for name in list(sys.modules):
        if any(name == m or name.startswith(m + ".") for m in modules):
            monkeypatch.delitem(sys.modules, name)
    for m in modules:
        monkeypatch.setitem(sys.modules, m, None)  # `import m` now raises ModuleNotFoundError
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if any(name.startswith(m) for m in modules) else real(name, *a),
    )


def test_dpsgd_without_opacus_names_the_dp_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "opacus")
    monkeypatch.delitem(sys.modules, "miabench.defenses.dpsgd", raising=False)
    with pytest.raises(extras.MissingExtraError, match=r"pip install 'miabench\[dp\]'"):
        importlib.import_module("miabench.defenses.dpsgd")
    monkeypatch.delitem(sys.modules, "miabench.defenses.dpsgd", raising=False)


def test_detection_map_without_pycocotools_names_the_detection_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from miabench.victims.detection import MeanAveragePrecisionValue

    _hide(monkeypatch, "pycocotools")
    with pytest.raises(extras.MissingExtraError, match=r"miabench\[detection\]"):
        MeanAveragePrecisionValue("map_50", box_format="xyxy", iou_type="bbox")


def test_slurm_launcher_without_plugin_exits_naming_the_slurm_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hide(monkeypatch, "hydra_plugins.hydra_submitit_launcher")
    with pytest.raises(SystemExit, match=r"hydra/launcher=slurm: .*miabench\[slurm\]"):
        extras.check_launcher(["-m", "hydra/launcher=slurm", "seed=0,1"])
    extras.check_launcher(["-m", "hydra/launcher=basic"])  # needs nothing


def test_installed_extras_pass() -> None:
    for extra in extras.EXTRAS:
        assert extras.has_extra(extra), f"scripts/install.sh installs [{extra}]"
    extras.check_launcher(["hydra/launcher=slurm"])


def test_dp_defense_from_config_without_opacus_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from omegaconf import OmegaConf

    import miabench.defenses
    from miabench.defenses.base import build_defense

    _hide(monkeypatch, "opacus")
    monkeypatch.delitem(sys.modules, "miabench.defenses.dpsgd", raising=False)
    # an earlier import left the module as the package's attribute, where Hydra looks first
    monkeypatch.delattr(miabench.defenses, "dpsgd", raising=False)
    cfg = OmegaConf.create({"defense": {"training": {"_target_": "miabench.defenses.dpsgd.DPSGD"}}})
    with pytest.raises(extras.MissingExtraError, match=r"defense.training: .*miabench\[dp\]"):
        build_defense(cfg)
    monkeypatch.delitem(sys.modules, "miabench.defenses.dpsgd", raising=False)


def test_serve_without_fastapi_names_the_serve_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf

    from miabench.serve.__main__ import build

    _hide(monkeypatch, "fastapi")
    with pytest.raises(extras.MissingExtraError, match=r"miabench\[serve\]"):
        build(OmegaConf.create({"serve": {}, "paths": {"root_dir": ".", "output_dir": "."}}))
