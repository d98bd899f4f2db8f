"""Reconstruction-error attack: per-sample mean absolute error, 8-bit quantised output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miabench.attacks.reconstruction import ReconstructionError, reconstruction_error


def _signals(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    target = torch.round(torch.rand(3, 3, 8, 8, generator=gen) * 255) / 255
    output = torch.rand(3, 3, 8, 8, generator=gen) * 1.2 - 0.1  # a little outside [0, 1]
    return {"sample_id": ["a", "b", "c"], "output": output, "target": target}


def test_quantized_error_matches_uint8_reference() -> None:
    s = _signals()
    # The reference: clip, cast to uint8 (truncating), / 255, mean |fake - real| per image.
    fake = (np.clip(s["output"].numpy().astype(np.float64), 0, 1) * 255).astype(np.uint8) / 255.0
    real = s["target"].numpy().astype(np.float64)
    expected = np.abs(fake - real).reshape(3, -1).mean(axis=1)
    got = reconstruction_error(s["output"], s["target"], quantize=True)
    assert got.dtype == torch.float64 and got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_unquantized_error_is_plain_l1() -> None:
    s = _signals(1)
    expected = (s["output"].double() - s["target"].double()).abs().mean(dim=(1, 2, 3))
    got = reconstruction_error(s["output"], s["target"], quantize=False)
    torch.testing.assert_close(got, expected)


def test_quantization_truncates_like_a_uint8_cast() -> None:
    target = torch.zeros(1, 1, 1, 2)
    output = torch.tensor([[[[1.75 / 255, 0.9 / 255]]]], dtype=torch.float64)
    # floor: 1.75 → 1 and 0.9 → 0 levels, so the mean error is 0.5 / 255.
    assert reconstruction_error(output, target).item() == pytest.approx(0.5 / 255)


def test_attack_scores_negated_error() -> None:
    s = _signals(2)
    attack = ReconstructionError("rec")
    assert attack.requires == ("output", "target")
    out = attack.score(s)
    assert set(out) == {"score", "reconstruction_error"}
    torch.testing.assert_close(out["score"], -out["reconstruction_error"])
    assert attack.describe()["quantize"] is True


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ"):
        reconstruction_error(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
