"""The reference's 3840 upsampled features, reduced and never materialised.

The regression of the predictability error runs on the reference's features (layer1..4
maps upsampled to 56x56 by skimage and concatenated) without building them:

* Upsampling is linear, so the layer-k block is ``U_k F_k`` with ``U_k`` the (fixed,
  separable) interpolation matrix and ``F_k`` the native map. The 1-D factors of ``U_k``
  come from the very same skimage call as the reference (resizing an identity matrix).
* For blocks with at most as many native pixels as channels (layer3, layer4), ``F_k`` is
  replaced by an (h*w - 1)-column factor with the same Gram matrix once the per-block
  constant is removed (the intercept absorbs constants). The minimum-norm predictions only
  depend on the features through ``X X^T`` and the centering, so they are unchanged, with
  256 + 512 + 195 + 48 = 1011 instead of 3840 columns. Removing the constant also removes
  the two exact dependencies that centering creates in the full matrix (both the layer3
  and the layer4 blocks span the constant vector), so the reduced problem is full rank.
* The 3136 x 3840 design matrix is never built: with ``U_k`` the upsampling of block ``k``
  and ``S`` the fit-pixel mask, the normal-equation blocks ``F_k^T U_k^T S U_l F_l`` are
  products at the coarser block's resolution (:func:`_blockwise_fit_predict`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from miabench.attacks.predictability.solver import SKLEARN_RCOND, _solve_primal


@functools.cache
def _skimage_interpolation_matrix(in_size: int, out_size: int) -> np.ndarray:
    from skimage.transform import resize  # only needed once per size

    # Resizing the identity with the reference's call (order=1, default mode='reflect',
    # anti_aliasing=None) gives, column by column, the weights it applies to each input
    # pixel along one axis; the 2-D (and 4-D) resize is the tensor product of these.
    mat = resize(np.eye(in_size), (out_size, in_size), order=1)
    mat.setflags(write=False)
    return mat


@functools.lru_cache(maxsize=64)
def interpolation_matrix(
    in_size: int,
    out_size: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """(out_size, in_size) 1-D matrix of ``skimage.transform.resize(..., order=1)``.

    ``resize(F, (1, C, out, out), order=1)`` of a (1, C, in, in) map equals
    ``A @ F @ A.T`` with ``A = interpolation_matrix(in, out)``. Cached per device and dtype.
    """
    return torch.tensor(_skimage_interpolation_matrix(in_size, out_size), device=device).to(dtype)


@functools.lru_cache(maxsize=64)
def _centering_basis(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # Orthonormal basis (n, n-1) of the vectors orthogonal to the ones vector: the first
    # n-1 columns of the centering matrix are independent and span that space.
    centering = torch.eye(n, dtype=torch.float64) - 1.0 / n
    q, _ = torch.linalg.qr(centering[:, : n - 1])
    return q.to(device=device, dtype=dtype)


def _gram_factor(M: torch.Tensor) -> torch.Tensor:
    """A square factor ``Z`` with ``Z Z^T = M`` for a batch of PSD matrices.

    Cholesky where it succeeds (cheap, and light on thread synchronisation, which matters
    on a busy CPU); otherwise -- repeated native pixels, e.g. a flat background, make ``M``
    singular -- ``V sqrt(Lambda)`` with rounding-level eigenvalues set to zero, so those
    columns are exactly zero (the solver pins them, or the fallback drops them).
    """
    Z, info = torch.linalg.cholesky_ex(M)
    bad = info != 0
    if bad.any():
        lam, vec = torch.linalg.eigh(M[bad])
        cutoff = lam[..., -1:] * M.shape[-1] * torch.finfo(M.dtype).eps
        root = torch.where(lam > cutoff, lam.clamp_min(0.0).sqrt(), torch.zeros_like(lam))
        Z[bad] = vec * root.unsqueeze(-2)
    return Z


def _upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(B, h, w, C) -> (B, size*size, C) exactly as skimage's order-1 resize, separably.

    Channels last, so both passes are plain matmuls and the result is already laid out
    with one row per pixel (the regression's rows).
    """
    b, h, w, c = maps.shape
    if h == w == size:
        return maps.reshape(b, size * size, c)  # skimage's matrix is then exactly the identity
    A_h = interpolation_matrix(h, size, maps.device, maps.dtype)
    A_w = interpolation_matrix(w, size, maps.device, maps.dtype)
    cols = A_w @ maps  # (b, h, size, c)
    return (A_h @ cols.reshape(b, h, size * c)).reshape(b, size * size, c)


def _upsample_adjoint(full: torch.Tensor, h: int, w: int, size: int) -> torch.Tensor:
    """Adjoint of :func:`_upsample`: (B, size*size, C) -> (B, h*w, C), i.e. ``U^T M``.

    Spreads each full-resolution pixel back onto the native pixels it was interpolated from,
    with the same weights; ``F^T U^T M`` is then the product ``(U F)^T M`` computed at the
    native resolution.
    """
    b, _, c = full.shape
    if h == w == size:
        return full
    A_h = interpolation_matrix(h, size, full.device, full.dtype)
    A_w = interpolation_matrix(w, size, full.device, full.dtype)
    rows = (A_h.mT @ full.reshape(b, size, size * c)).reshape(b, h, size, c)
    return (A_w.mT @ rows).reshape(b, h * w, c)


def _native_blocks(maps: Sequence[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """Per layer, the (B, h, w, c) pixels-last block whose upsampling gives that layer's
    columns of :func:`reduced_features` (the map itself, or its low-rank factor)."""
    blocks = []
    for fmap in maps:
        b, c, h, w = fmap.shape
        hw = h * w
        if hw <= c:
            # The factor is small; computing it in float64 whatever ``dtype`` keeps weak
            # directions that a float32 factorisation would round away.
            flat = fmap.to(torch.float64).reshape(b, c, hw)
            q = _centering_basis(hw, flat.device, torch.float64)  # (hw, hw-1)
            proj = flat @ q  # (b, c, hw-1): the map in a basis orthogonal to constants
            pixels_last = (q @ _gram_factor(proj.mT @ proj)).to(dtype)  # (b, hw, hw-1)
        else:
            pixels_last = fmap.to(dtype).reshape(b, c, hw).mT  # (b, hw, c)
        blocks.append(pixels_last.reshape(b, h, w, -1))
    return blocks


def reduced_features(
    maps: Sequence[torch.Tensor], size: int = 56, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Design matrix with the same minimum-norm predictions as the reference's 3840 features.

    Blocks whose native map has no more pixels than channels (``h*w <= C``) are replaced by
    an (h*w - 1)-column factor ``Z`` with ``Z Z^T = F~ F~^T``, where ``F~`` is the map with
    its per-channel mean over pixels removed (a constant feature shift is absorbed by the
    intercept; removing it also removes the constant direction every such block spans).

    Args:
        maps: native feature maps, each (B, C_k, h_k, w_k).
        size: upsampled side (56 in the reference).
        dtype: working dtype.

    Returns:
        (B, size*size, d) contiguous, pixels in row-major order (row ``i*size + j``).
    """
    return torch.cat([_upsample(blk, size) for blk in _native_blocks(maps, dtype)], dim=2)


def _blockwise_fit_predict(
    blocks: Sequence[torch.Tensor],
    y: torch.Tensor,
    fit: torch.Tensor,
    size: int,
    rcond: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image least squares on the upsampled features, computed at native resolution.

    Equal to ``batched_min_norm_lstsq_predict`` on the fit rows of ``reduced_features``, but
    the (size*size, d) design matrix is never built. With ``U_k`` the (linear, separable)
    upsampling of block ``k``, ``S`` the diagonal fit mask and ``F_k`` a block centred on
    the fit rows (rows of ``U_k`` sum to 1, so ``U_k F_k`` is the centred upsampled block):

    * ``G_kl = F_k^T U_k^T S U_l F_l``: the adjoint upsampling brings the masked larger block
      down to the smaller block's grid, so each product has the coarser block's pixel count
      as inner dimension (784 instead of 2195 for layer2, 196 for layer3, ...);
    * ``R_k = F_k^T U_k^T S y~`` and the predictions ``sum_k U_k (F_k W_k) + mean(y)``
      only upsample k-column maps.

    Args:
        blocks: (B, h_k, w_k, c_k) native blocks (:func:`_native_blocks`), in column order.
        y: (B, size*size, k) targets.
        fit: (B, size*size) fit-row mask (any number of rows per image; at least one).
        size: upsampled side.
        rcond: sklearn's singular-value cutoff.

    Returns:
        ``(predictions, ok)``: (B, size*size, k) predictions for every pixel and which
        elements can be trusted (see ``_solve_psd``).
    """
    dtype = blocks[0].dtype
    s = fit.to(dtype).unsqueeze(-1)  # (B, P, 1)
    n = s.sum(1, keepdim=True).clamp_min(1.0)  # (B, 1, 1)
    y = y.to(dtype)
    y_mean = (s * y).sum(1, keepdim=True) / n
    masked_y = (y - y_mean) * s
    shapes = [blk.shape[1:3] for blk in blocks]
    # centre each native block on the (interpolation-weighted) fit rows
    centred = []
    for blk, (h, w) in zip(blocks, shapes, strict=True):
        F = blk.reshape(blk.shape[0], h * w, -1)
        weights = _upsample_adjoint(s, h, w, size)  # (B, hw, 1): fit rows per native pixel
        centred.append(F - (weights.mT @ F) / n)
    widths = [F.shape[-1] for F in centred]
    offsets = [0, *np.cumsum(widths).tolist()]
    d = offsets[-1]
    G = y.new_zeros(y.shape[0], d, d)
    R = y.new_empty(y.shape[0], d, y.shape[-1])
    full: dict[int, torch.Tensor] = {}  # masked upsampled blocks, built once each

    def masked_full(i: int) -> torch.Tensor:
        if i not in full:
            full[i] = _upsample(centred[i].reshape(-1, *shapes[i], widths[i]), size) * s
        return full[i]

    for k, (Fk, (hk, wk)) in enumerate(zip(centred, shapes, strict=True)):
        cols_k = slice(offsets[k], offsets[k + 1])
        R[:, cols_k] = Fk.mT @ _upsample_adjoint(masked_y, hk, wk, size)
        for j in range(k, len(centred)):
            cols_j = slice(offsets[j], offsets[j + 1])
            hj, wj = shapes[j]
            if hj * wj <= hk * wk:  # inner dimension = the coarser block's pixels
                G[:, cols_k, cols_j] = (
                    _upsample_adjoint(masked_full(k), hj, wj, size).mT @ centred[j]
                )
            else:
                G[:, cols_k, cols_j] = Fk.mT @ _upsample_adjoint(masked_full(j), hk, wk, size)
    full.clear()
    W, ok = _solve_primal(G, R, rcond)
    preds = y_mean.expand(-1, y.shape[1], -1).clone()
    for k, (Fk, (h, w)) in enumerate(zip(centred, shapes, strict=True)):
        native = Fk @ W[:, offsets[k] : offsets[k + 1]]  # (B, hw, k)
        preds += _upsample(native.reshape(-1, h, w, native.shape[-1]), size)
    return preds, ok


def linear_predictions(
    maps: Sequence[torch.Tensor],
    y: torch.Tensor,
    fit: torch.Tensor,
    size: int = 56,
    dtype: torch.dtype = torch.float64,
    rcond: float = SKLEARN_RCOND,
) -> torch.Tensor:
    """The per-image linear predictor of the reference, fit on the ``fit`` pixels of each image.

    Equal to ``LinearRegression().fit(X[fit], y[fit]).predict(X)`` per image, with ``X`` the
    reference's upsampled 3840 features (exactly: see :func:`reduced_features` and
    :func:`_blockwise_fit_predict`). In a lower ``dtype``, images whose fast path is not
    trusted are solved again in float64.

    Args:
        maps: native feature maps, each (B, C_k, h_k, w_k).
        y: (B, size*size, k) targets, row ``i*size + j``.
        fit: (B, size*size) bool mask of the pixels that fit the regression.
        size: upsampled side.
        dtype: dtype of the solve.
        rcond: relative singular-value cutoff (sklearn's ``tol``).

    Returns:
        (B, size*size, k) predictions for every pixel, in ``dtype``.
    """
    blocks = _native_blocks(maps, dtype)
    preds, ok = _blockwise_fit_predict(blocks, y, fit, size, rcond)
    if not ok.all():
        bad = ~ok
        again, _ = _blockwise_fit_predict(
            [blk[bad].to(torch.float64) for blk in blocks], y[bad], fit[bad], size, rcond
        )
        preds[bad] = again.to(preds.dtype)
    return preds
