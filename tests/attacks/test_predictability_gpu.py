"""The batched predictability fit on CUDA gives the CPU's answer (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from miabench.attacks.predictability.solver import batched_min_norm_lstsq_predict


@pytest.mark.gpu
@pytest.mark.parametrize("n, d", [(300, 50), (220, 384)])
def test_cuda_solver_matches_cpu(n: int, d: int) -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4, n, d, generator=g, dtype=torch.float64)
    Y = torch.randn(4, n, 3, generator=g, dtype=torch.float64)
    X_eval = torch.randn(4, 50, d, generator=g, dtype=torch.float64)
    cpu = batched_min_norm_lstsq_predict(X, Y, X_eval)
    gpu = batched_min_norm_lstsq_predict(X.cuda(), Y.cuda(), X_eval.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-6)
