"""Exact batched minimum-norm least squares: sklearn's ``LinearRegression`` on a device.

sklearn's ``LinearRegression`` (scipy ``lstsq``, gelsd) returns the minimum-norm solution
with singular values below ``cond`` times the largest dropped; this module returns that
solution too, through a Cholesky fast path and an eigendecomposition fallback, with
``cond = 1e-6``. That is sklearn's cutoff from version 1.9 on, which passes its ``tol``
(default 1e-6) to lstsq as ``cond``; before 1.9 sklearn called lstsq without ``cond``, so
scipy's default applied, the machine epsilon of the solve's dtype (1.2e-7 for the float32
features the reference passes, 2.2e-16 in float64). The authors' 2021 code therefore ran
with the float32 epsilon; on well-conditioned features (ImageNet weights) the two cutoffs
give the same answer, on nearly degenerate ones (a randomly initialised backbone) the
errors move by up to ~2e-4 (8 images of the untrained wide_resnet50_2's features).
"""

from __future__ import annotations

import torch

#: sklearn's LinearRegression default ``tol``, passed to scipy's lstsq as ``cond`` from
#: sklearn 1.9 on (earlier versions left scipy's default, the dtype's machine epsilon):
#: singular values below ``tol * largest`` count as zero.
SKLEARN_RCOND = 1e-6
#: Largest estimated condition number of the normal-equation matrix accepted on the
#: Cholesky fast path, per dtype. Beyond 1e10 a float64 solution may lose the 1e-4
#: agreement with the reference, or sklearn may truncate a direction (it drops singular
#: values below 1e-6 of the largest, i.e. eigenvalues below 1e-12), so the eigh fallback
#: decides instead. The float32 bound is empirical (random real-shaped maps, whose estimate
#: is ~3e7, agree to ~1e-5); elements beyond it are solved again in float64.
FAST_PATH_MAX_COND = {torch.float64: 1e10, torch.float32: 1e8}


#: Probe vectors of the condition estimate (a block, so one step of inverse iteration suffices).
_N_PROBES = 4


def _probes(d: int, like: torch.Tensor) -> torch.Tensor:
    # Fixed, generic start vectors (no RNG: identical on every device and call).
    idx = torch.arange(d, device=like.device, dtype=like.dtype).unsqueeze(1)
    phase = torch.arange(_N_PROBES, device=like.device, dtype=like.dtype)
    v = torch.cos(idx * (2.399963229728653 + phase) + 0.5 + phase)
    return (v / v.norm(dim=0)).expand(like.shape[0], d, _N_PROBES)


def _checked_cholesky_solve(
    A: torch.Tensor, R: torch.Tensor, max_cond: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``A W = R`` for SPD ``A`` by Cholesky; flag elements that failed or are ill-conditioned.

    Reads only the upper triangle of ``A``.

    The condition estimate rides along with the solve: one step of block inverse iteration
    on a few fixed probes and their Rayleigh quotients bound the smallest eigenvalue from
    above (sharply when it is isolated, the dangerous case), the trace bounds the largest.
    Three batched triangular solves in all: on CPU every LAPACK call is a thread fork/join,
    and a handful of large calls holds up on a busy machine where many small ones stall.

    Returns:
        ``(W, ok)``; ``W`` is only meaningful where ``ok``.
    """
    # Only the upper triangle of A is read (see _gram_upper); A = U^T U.
    U, info = torch.linalg.cholesky_ex(A, upper=True)
    ok = info == 0
    if not ok.all():
        U[~ok] = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)

    def forward(rhs: torch.Tensor) -> torch.Tensor:  # U^T z = rhs, as z^T U = rhs^T
        # (a solve with U.mT would make torch copy the batched factor first)
        return torch.linalg.solve_triangular(U, rhs.mT, upper=True, left=False).mT

    k = R.shape[-1]
    sol = torch.linalg.solve_triangular(
        U, forward(torch.cat([R, _probes(A.shape[-1], A)], dim=-1)), upper=True
    )
    W, v = sol[..., :k], sol[..., k:]
    v = v / v.norm(dim=-2, keepdim=True)
    # v^T A^{-1} v = |U^{-T} v|^2 <= 1 / lambda_min(A): estimates 1 / lambda_min from below.
    inv_min_eig = forward(v).square().sum(-2).amax(-1)
    trace = A.diagonal(dim1=-2, dim2=-1).sum(-1)
    ok &= torch.isfinite(inv_min_eig) & (trace * inv_min_eig <= max_cond)
    return W, ok


def _gram_upper(X: torch.Tensor, n_blocks: int = 4) -> torch.Tensor:
    """``X^T X`` with only the upper triangle (and the diagonal blocks) filled in.

    Cholesky reads one triangle, so computing block rows right of the diagonal saves ~40%
    of the flops of the largest product of the fast path. The rest stays zero.
    """
    d = X.shape[-1]
    G = X.new_zeros(X.shape[0], d, d)
    edges = [round(i * d / n_blocks) for i in range(n_blocks + 1)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        G[:, lo:hi, lo:] = X[..., lo:hi].mT @ X[..., lo:]
    return G


def _eigh_pinv(A: torch.Tensor, R: torch.Tensor, rcond: float) -> torch.Tensor:
    """``pinv(A) @ R`` for symmetric PSD ``A`` (upper triangle read) with an lstsq-like cutoff.

    For ``A = M^T M`` (or ``M M^T``), lstsq drops singular values of ``M`` below
    ``rcond * s_max``: eigenvalues of ``A`` below ``rcond**2 * lambda_max`` (never below
    what the dtype resolves).
    """
    lam, V = torch.linalg.eigh(A, UPLO="U")
    lam_max = lam[..., -1:].clamp_min(0.0)
    cutoff = lam_max * max(rcond**2, A.shape[-1] * torch.finfo(A.dtype).eps)
    inv = torch.where(lam > cutoff, 1.0 / lam, torch.zeros_like(lam))
    return V @ (inv.unsqueeze(-1) * (V.mT @ R))


def _solve_psd(
    A: torch.Tensor, R: torch.Tensor, rcond: float, live: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pinv(A) @ R``: Cholesky where trusted, else (float64 only) the eigh pseudo-inverse.

    Args:
        A: (B, d, d) symmetric PSD, upper triangle read.
        R: (B, d, k) right-hand sides.
        rcond: lstsq-like relative singular-value cutoff of the fallback.
        live: optional (B, d) bool; rows and columns outside it are decoupled (zero
            right-hand side, zero weight), so the fallback decomposes the live block only.

    Returns:
        ``(W, ok)``; in lower precision, elements with ``ok`` false are left to the caller.
    """
    max_cond = FAST_PATH_MAX_COND.get(A.dtype, 0.0)
    diag = A.diagonal(dim1=-2, dim2=-1)
    shown = diag if live is None else torch.where(live, diag, torch.inf)
    # cond(A) >= max / min diagonal entry: such elements would only fail the fast path's
    # check after paying for the factorisation (every one does, with untrained features)
    tried = diag.amax(-1) <= max_cond * shown.amin(-1)
    W = torch.zeros_like(R)
    ok = torch.zeros_like(tried)
    if tried.all():
        W, ok = _checked_cholesky_solve(A, R, max_cond)
    elif tried.any():
        W[tried], ok[tried] = _checked_cholesky_solve(A[tried], R[tried], max_cond)
    if A.dtype == torch.float64 and not ok.all():
        bad = ~ok
        if live is None:
            W[bad] = _eigh_pinv(A[bad], R[bad], rcond)
        else:
            # one element at a time, each on its live block: ~70 of 1011 columns of an
            # untrained backbone's features are dead, and eigh costs d^3
            for i in bad.nonzero()[:, 0].tolist():
                idx = live[i].nonzero()[:, 0]
                W[i] = 0.0
                W[i, idx] = _eigh_pinv(A[i][idx][:, idx], R[i, idx], rcond)
        ok = torch.ones_like(ok)
    return W, ok


def _solve_primal(
    G: torch.Tensor, R: torch.Tensor, rcond: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pinv(G) @ R`` for the centred Gram matrix ``G`` (upper triangle read; modified in place).

    Columns that are (numerically) zero after centering -- a dead or constant channel -- get
    zero weight in the minimum-norm solution: they are decoupled (zero row and column, a
    diagonal entry on the matrix's own scale, zero right-hand side) so that they do not push
    an otherwise healthy system off the fast path, and the fallback leaves them out. The
    threshold (squared norm 2e-16 of the largest) is far below sklearn's cutoff (singular
    values 1e-6 of the largest) in every dtype.
    """
    diag = G.diagonal(dim1=-2, dim2=-1)
    top = diag.amax(-1, keepdim=True)
    dead = diag <= torch.finfo(torch.float64).eps * top
    if not dead.any():
        return _solve_psd(G, R, rcond)
    keep = (~dead).to(G.dtype)
    # in place: a second (B, d, d) copy costs more than the products on a busy CPU
    G.mul_(keep.unsqueeze(-1)).mul_(keep.unsqueeze(-2))
    diag.add_(dead * top)
    return _solve_psd(G, R * keep.unsqueeze(-1), rcond, live=~dead)


def _predict(
    X_fit: torch.Tensor, Y_fit: torch.Tensor, X_eval: torch.Tensor, rcond: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-norm predictions in the inputs' dtype, and which elements can be trusted."""
    n, d = X_fit.shape[-2:]
    x_mean = X_fit.mean(dim=1, keepdim=True)
    y_mean = Y_fit.mean(dim=1, keepdim=True)
    Xc, Yc = X_fit - x_mean, Y_fit - y_mean
    if n >= d:
        # Primal: w = pinv(Xc^T Xc) Xc^T Yc.
        G = _gram_upper(Xc)
        R = Xc.mT @ Yc
        W, ok = _solve_primal(G, R, rcond)
    else:
        # Dual: w = Xc^T pinv(K) Yc with K = Xc Xc^T. Centering puts the ones vector in K's
        # null space; Yc is orthogonal to it, so adding s * 11^T / n (s = mean eigenvalue)
        # leaves the answer unchanged while making K invertible for Cholesky.
        K = Xc @ Xc.mT
        scale = K.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(torch.finfo(K.dtype).tiny)
        alpha, ok = _solve_psd(K + (scale / n)[:, None, None], Yc, rcond)
        W = Xc.mT @ alpha
    # (X_eval - x_mean) W + y_mean without materialising the centred X_eval.
    return X_eval @ W + (y_mean - x_mean @ W), ok


def batched_min_norm_lstsq_predict(
    X_fit: torch.Tensor, Y_fit: torch.Tensor, X_eval: torch.Tensor, rcond: float = SKLEARN_RCOND
) -> torch.Tensor:
    """Batched ``LinearRegression().fit(X_fit, Y_fit).predict(X_eval)``, minimum-norm included.

    Equal, per batch element, to sklearn's ``LinearRegression(fit_intercept=True)``: the
    intercept comes from centering, and the weights are the minimum-norm least-squares
    solution (what scipy's gelsd returns for under-determined or rank-deficient systems).
    The fast path solves the normal equations by Cholesky, in the primal (``d x d``) when
    ``n >= d`` and in the dual/kernel form (``n x n``) when ``n < d``. Elements where
    Cholesky fails or the condition estimate is too large are solved again: in float64 by
    an eigendecomposition pseudo-inverse of the same matrix that drops singular values
    below ``rcond`` times the largest, like lstsq; in lower precision, by this function in
    float64. Runs on the inputs' device.

    Args:
        X_fit: (B, n, d) fit features.
        Y_fit: (B, n, k) fit targets.
        X_eval: (B, m, d) features to predict.
        rcond: relative singular-value cutoff (sklearn's ``tol``).

    Returns:
        (B, m, k) predictions, in the inputs' dtype.
    """
    if X_fit.ndim != 3 or Y_fit.ndim != 3 or X_eval.ndim != 3:
        raise ValueError("expected (B, n, d), (B, n, k) and (B, m, d) tensors")
    preds, ok = _predict(X_fit, Y_fit, X_eval, rcond)
    if not ok.all():
        bad = ~ok
        as64 = [t[bad].to(torch.float64) for t in (X_fit, Y_fit, X_eval)]
        preds[bad] = batched_min_norm_lstsq_predict(*as64, rcond=rcond).to(preds.dtype)
    return preds
