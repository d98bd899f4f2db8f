"""docs/audit_your_model.md: every command in it composes as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose_cfg

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit_your_model.md"


def _commands() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.startswith("python -m miabench.")]


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c[2:4]))
def test_documented_command_composes(command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    app = command[2].removeprefix("miabench.")
    cfg = compose_cfg(app, command[3:])
    assert cfg.victim.checkpoint.startswith("/")
    assert cfg.victim.checkpoint_reader._target_.startswith("miabench.checkpoints.")
    generator = cfg.victim.module.get("generator")
    # the structure it names builds (shapes only: no init; SPADE's spectral norm takes
    # seconds even on the meta device, and its arguments are the project net's)
    if generator is not None and "spade" not in generator._target_:
        for module in ("unet", "pix2pixhd_authors", "resnet_gen"):
            monkeypatch.setattr(f"miabench.victims.nets.{module}.init_weights", lambda m: None)
        with torch.device("meta"):
            assert len(instantiate(generator).state_dict()) > 0


def test_resnet_generator_override_builds_the_authors_structure() -> None:
    cfg = compose_cfg(
        "run_attack",
        [
            "victim.module.generator._target_=miabench.victims.nets.resnet_gen.ResnetGenerator",
            "~victim.module.generator.num_downs",
            "victim.module.generator.ngf=4",
        ],
    )
    net = instantiate(cfg.victim.module.generator)
    assert "model.10.conv_block.6.weight" in net.state_dict()  # pix2pix trains with dropout
