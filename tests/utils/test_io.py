"""Verified caches: checksum sidecars, damaged files named and recomputed, torch archives."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from miabench.metrics.utility import image_utility, psnr_cap
from miabench.utils.io import (
    CorruptFileError,
    atomic_write,
    atomic_write_json,
    check_torch_archive,
    checksum_path,
    read_json,
    read_verified,
    verified_exists,
)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def bitflip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGES: dict[str, Callable[[Path], None]] = {"truncate": truncate, "bitflip": bitflip}


def _write_torch(path: Path) -> None:
    state = {"w": torch.arange(4096, dtype=torch.float32), "b": torch.ones(3)}
    atomic_write(path, lambda p: torch.save(state, p), checksum=True)


def _write_csv(path: Path) -> None:
    frame = pd.DataFrame({"sample_id": [f"train/{i}.png" for i in range(50)], "score": 0.5})
    atomic_write(path, lambda p: frame.to_csv(p, index=False), checksum=True)


def _write_json(path: Path) -> None:
    atomic_write_json(path, {"attacks": {"reconstruction": {"auc": 0.91}}, "n": 64}, checksum=True)


WRITERS = {"victim.pt": _write_torch, "scores.csv": _write_csv, "results.json": _write_json}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_sidecar_is_sha256sum_format_and_verifies(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    WRITERS[name](path)
    digest, filename = checksum_path(path).read_text().split()
    assert filename == name and len(digest) == 64
    assert read_verified(path) == path and verified_exists(path)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_damaged_file_is_named_then_removed_for_recomputing(
    tmp_path: Path, name: str, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / name
    WRITERS[name](path)
    DAMAGES[damage](path)
    with pytest.raises(CorruptFileError, match=str(path)) as err:
        read_verified(path)
    assert "rerun" in str(err.value)
    # the cache-reuse check removes it (and its sidecar), so the stage computes it again
    assert not verified_exists(path)
    assert not path.exists() and not checksum_path(path).exists()
    assert str(path) in caplog.text
    WRITERS[name](path)
    assert verified_exists(path)


def test_damaged_json_with_sidecar_is_refused_by_read_json(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    _write_json(path)
    path.write_text(path.read_text().replace("0.91", "0.99"))  # still valid JSON
    with pytest.raises(CorruptFileError, match="results.json"):
        read_json(path)


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_torch_archive_without_sidecar_is_checked_by_its_zip_crcs(
    tmp_path: Path, damage: str
) -> None:
    # Lightning's checkpoints have no sidecar; torch's zip CRCs still find the damage.
    path = tmp_path / "last.ckpt"
    _write_torch(path)
    checksum_path(path).unlink()
    assert check_torch_archive(path) == path
    DAMAGES[damage](path)
    with pytest.raises(CorruptFileError, match="last.ckpt") as err:
        check_torch_archive(path, fix="retrain it")
    assert "retrain it" in str(err.value) and "PytorchStreamReader" not in str(err.value)


def test_failed_write_keeps_the_previous_file_and_its_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    _write_csv(path)
    before = path.read_bytes()

    def broken(tmp: Path) -> None:
        tmp.write_text("sample_id,sco")  # half-written, then the job dies
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken, checksum=True)
    assert path.read_bytes() == before and verified_exists(path)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_file_without_sidecar_is_accepted_unverified(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"a": 1}))
    assert verified_exists(path) and read_json(path) == {"a": 1}


def test_exact_copy_gets_a_finite_psnr_above_any_imperfect_8bit_output() -> None:
    target = torch.rand(3, 3, 16, 16)
    target = (target * 255).round() / 255
    output = target.clone()
    output[1, 0, 0, 0] += 1 / 255  # one value one grey level off
    output[2] = 1 - output[2]
    psnr = image_utility(output, target)["psnr"]
    cap = psnr_cap(3 * 16 * 16)
    assert math.isclose(psnr[0].item(), cap, rel_tol=1e-6)
    assert math.isclose(cap, 10 * math.log10(2 * 255**2 * 768))
    # the smallest error an 8-bit image can have scores exactly 3 dB below the cap
    assert math.isclose(psnr[1].item(), cap - 10 * math.log10(2), abs_tol=1e-3)
    assert psnr[2] < psnr[1] and torch.isfinite(psnr).all()
    json.dumps({"psnr": psnr.tolist()}, allow_nan=False)  # valid JSON
