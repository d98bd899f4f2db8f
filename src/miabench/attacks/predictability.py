"""Predictability error and membership error (Shafran, Peleg & Hoshen, ICCV 2021).

The predictability error of a query says how easy its ground truth is to predict from
its input: a linear regression from deep features of the input (frozen wide_resnet50_2,
layer1..layer4 upsampled to 56x56 and concatenated, 3840 features per pixel) to the
ground-truth pixels (resized to 56x56) is fit on a random 70% of the 3136 pixels, and the
error is its mean absolute error on the other 30%. The membership error subtracts it from
the reconstruction error, so that images that are merely easy are not taken for members.

The reference (public code avitalsh/reconst_based_MIA, ``predictability_error.py``) runs
skimage and sklearn per image. This module computes the same numbers batched on the
attack's device:

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
* sklearn's ``LinearRegression`` (scipy ``lstsq``, gelsd) returns the minimum-norm solution
  with singular values below ``cond`` times the largest dropped; this module returns that
  solution too, through a Cholesky fast path and an eigendecomposition fallback, with
  ``cond = 1e-6``. That is sklearn's cutoff from version 1.9 on, which passes its ``tol``
  (default 1e-6) to lstsq as ``cond``; before 1.9 sklearn called lstsq without ``cond``, so
  scipy's default applied, the machine epsilon of the solve's dtype (1.2e-7 for the float32
  features the reference passes, 2.2e-16 in float64). The authors' 2021 code therefore ran
  with the float32 epsilon; on well-conditioned features (ImageNet weights) the two cutoffs
  give the same answer, on nearly degenerate ones (a randomly initialised backbone) the
  errors move by up to ~2e-4 (8 images of the untrained wide_resnet50_2's features).
* The 3136 x 3840 design matrix is never built: with ``U_k`` the upsampling of block ``k``
  and ``S`` the fit-pixel mask, the normal-equation blocks ``F_k^T U_k^T S U_l F_l`` are
  products at the coarser block's resolution (:func:`_blockwise_fit_predict`).

Where this differs from the reference on purpose:

* The input is preprocessed on tensors (torchvision's antialiased bilinear resize to 256,
  centre crop 224), which approximates but does not bit-match PIL's 8-bit ``Resize(256)``;
  the ground truth, on the other hand, is resized with PIL exactly as the reference does.
* The pixel split is a permutation seeded by ``(seed, sample_id)``, with sklearn's sizes;
  the reference's ``train_test_split`` is unseeded, so it is not reproducible anyway.
* The solve runs in float64 by default. The reference hands sklearn float32 features, and
  float32 lstsq differs from the exact minimum-norm answer (by ~1e-5 on random maps, by
  ~3e-3 on the nearly degenerate maps of a randomly initialised network); this module
  matches the float64 (exact) answer.

What this copies from the reference although it looks like a slip: the features see the
centre 224x224 crop of the input resized to 256 (the middle 87.5% of each side), while the
ground truth is the *whole* image resized to 56x56, so feature pixel ``(i, j)`` and target
pixel ``(i, j)`` cover slightly different parts of the scene. miabench keeps this
misalignment, because the published numbers were measured with it.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.transforms.v2 import functional as TF

from miabench.attacks.base import Attack
from miabench.attacks.reconstruction import reconstruction_error
from miabench.utils.hashing import stable_hash
from miabench.utils.weights import build_with_weights, torchvision_name
from miabench.victims.base import Signals

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYERS = ("layer1", "layer2", "layer3", "layer4")
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

_RESNET_PREFIXES = ("resnet", "resnext", "wide_resnet")


# --------------------------------------------------------------------------------------
# Backbone
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """Switch off TF32 for CUDA matmuls and cuDNN convolutions; restore the previous flags.

    cuDNN allows TF32 by default, so on Ampere and newer GPUs the backbone's convolutions
    would round their inputs to 10-bit mantissas and a GPU attack would not agree with a CPU
    one to the stated tolerance. The attacks run their backbone forward and their solve
    inside this context (recorded as ``cuda_tf32: false`` in ``describe()``). On CPU the flags
    have no effect.
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


class FeatureBackbone(nn.Module):
    """Frozen torchvision ResNet returning the layer1..layer4 maps of preprocessed images.

    Args:
        arch: a torchvision ResNet-family builder name (``wide_resnet50_2`` as in the
            paper; ``resnet18`` is handy in tests).
        weights: ``"imagenet"`` (torchvision's IMAGENET1K_V1 weights, downloaded or taken
            from the torch hub cache), a local ``state_dict`` file written by ``torch.save``,
            or ``"none"`` (random initialisation from a fixed seed, for tests).
    """

    def __init__(self, arch: str = "wide_resnet50_2", weights: str = "imagenet") -> None:
        super().__init__()
        if not arch.startswith(_RESNET_PREFIXES) or arch not in torchvision.models.list_models(
            module=torchvision.models
        ):
            raise ValueError(f"arch must be a torchvision ResNet-family model, got '{arch}'")
        self.arch = arch
        self.weights = str(weights)
        enum = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
        model, self.record = build_with_weights(
            self.weights,
            lambda pretrained: torchvision.models.get_model(
                arch, weights=enum if pretrained else None
            ),
            what=f"torchvision's {arch}",
            imagenet=torchvision_name(arch, "IMAGENET1K_V1"),
            # A fixed seed keeps "random" features identical from run to run, whatever ran
            # before (unlike a victim's `none`, which follows the run's seed).
            seed_none=0,
        )
        self.extractor = create_feature_extractor(model, return_nodes={k: k for k in LAYERS})
        self.extractor.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureBackbone:
        """Stay in eval mode: batch-norm statistics of a frozen backbone must not move."""
        return super().train(False)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Back in eval mode after ``copy.deepcopy`` or unpickling.

        torch.fx's ``GraphModule`` rebuilds its submodules on copy and pickle, and they come
        back in training mode (batch norm would then use batch statistics); both paths end here.
        """
        super().__setstate__(state)
        self.eval()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Tensor version of the reference transform (Resize(256), CenterCrop(224), Normalize).

        Args:
            images: (B, C, H, W) in [0, 1], C in {1, 3}; 1-channel images are repeated to
                3 channels like ``transforms.Grayscale(3)``.
        """
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected (B, 1|3, H, W) images, got {tuple(images.shape)}")
        x = images.to(self.mean.device, torch.float32)
        x = TF.resize(x, [256], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        x = TF.center_crop(x, [224, 224])
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return the layer1..layer4 maps, each (B, C_k, h_k, w_k), of ``images`` in [0, 1]."""
        feats = self.extractor(self.preprocess(images))
        return [feats[k] for k in LAYERS]

    def describe(self) -> dict[str, Any]:
        """Architecture and weights (with the checkpoint hash for a local file)."""
        return {"arch": self.arch, **self.record.describe()}


# --------------------------------------------------------------------------------------
# Exact batched minimum-norm least squares
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Features: exact skimage upsampling, low-rank reduction
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Ground truth, pixel split, predictability error
# --------------------------------------------------------------------------------------


def resize_ground_truth(targets: torch.Tensor, size: int = 56) -> torch.Tensor:
    """Ground truth at ``size x size`` exactly as the reference: PIL bicubic on 8-bit images.

    The whole target is resized, not the centre crop the features see (as in the reference;
    see the module docstring).

    The reference calls ``gt_img.resize((56, 56))`` on the uint8 image file (PIL's default
    resample is bicubic for L/RGB) and ``ToTensor``. PIL's fixed-point 8-bit resampling has
    no exact tensor equivalent, so each (B, C, H, W) target in [0, 1] is rounded back to its
    8-bit levels and every channel resized as an 'L' image (PIL resizes RGB bands
    independently with the same kernel, so this equals the RGB resize).

    Returns:
        (B, C, size, size) float64 tensor in [0, 1] on the targets' device.
    """
    levels = torch.round(targets.detach().clamp(0.0, 1.0) * 255.0).to(torch.uint8).cpu().numpy()
    out = np.empty((*levels.shape[:2], size, size), dtype=np.uint8)
    for i, j in np.ndindex(*levels.shape[:2]):
        img = Image.fromarray(levels[i, j])  # 2-D uint8: mode "L"
        out[i, j] = np.asarray(img.resize((size, size), Image.Resampling.BICUBIC))
    return torch.from_numpy(out).to(targets.device, torch.float64) / 255.0


def split_sizes(n_pixels: int, fit_fraction: float = 0.7) -> tuple[int, int]:
    """``(n_fit, n_eval)`` as sklearn's ``train_test_split(train_size=f, test_size=1-f)``.

    sklearn rounds the held-out count up: ``n_eval = ceil((1 - f) * n)``; 2195 / 941 of 3136.
    """
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    n_eval = math.ceil((1.0 - fit_fraction) * n_pixels)
    return n_pixels - n_eval, n_eval


def pixel_split(
    sample_ids: Sequence[str], n_pixels: int, fit_fraction: float = 0.7, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random pixel split, a function of ``(seed, sample_id)`` only.

    Returns:
        ``(fit_idx, eval_idx)``: (B, n_fit) and (B, n_eval) int64 CPU tensors.
    """
    n_fit, _ = split_sizes(n_pixels, fit_fraction)
    perms = []
    for sid in sample_ids:
        gen = torch.Generator().manual_seed(int(stable_hash([seed, str(sid)], length=15), 16))
        perms.append(torch.randperm(n_pixels, generator=gen))
    perm = torch.stack(perms)
    return perm[:, :n_fit], perm[:, n_fit:]


def predictability_errors_from_features(
    maps: Sequence[torch.Tensor],
    y: torch.Tensor,
    fit_idx: torch.Tensor,
    eval_idx: torch.Tensor,
    size: int = 56,
    dtype: torch.dtype = torch.float64,
    batch_size: int = 8,
) -> torch.Tensor:
    """Predictability errors from native feature maps (steps 2-4 of the reference).

    Args:
        maps: native maps, each (B, C_k, h_k, w_k).
        y: (B, size*size, k) ground-truth pixels, row ``i*size + j``.
        fit_idx: (B, n_fit) pixel indices of the regression fit.
        eval_idx: (B, n_eval) held-out pixel indices.
        size: upsampled side.
        dtype: dtype of the solve.
        batch_size: images solved together (bounds memory: ~30 MB per image in float64).

    Returns:
        (B,) float64 mean absolute error over held-out pixels and channels.
    """
    errors = []
    for start in range(0, y.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        Y = y[sl].to(maps[0].device, dtype)
        fit = torch.zeros(Y.shape[:2], dtype=torch.bool, device=Y.device)
        fit.scatter_(1, fit_idx[sl].to(Y.device), True)
        preds = linear_predictions([m[sl] for m in maps], Y, fit, size, dtype)
        held = eval_idx[sl].to(Y.device).unsqueeze(-1).expand(-1, -1, Y.shape[-1])
        diff = torch.gather(preds, 1, held) - torch.gather(Y, 1, held)
        errors.append(diff.abs().mean(dim=(1, 2), dtype=torch.float64))
    return torch.cat(errors)


def reference_predictability_error(
    maps: Sequence[np.ndarray],
    y: np.ndarray,
    fit_idx: np.ndarray,
    eval_idx: np.ndarray,
    size: int = 56,
) -> float:
    """The reference computation for one image (skimage + sklearn); slow, for tests and benches.

    Args:
        maps: native maps of one image, each (C_k, h_k, w_k); their dtype is kept (the
            reference feeds float32 network outputs, so sklearn then solves in float32).
        y: (size*size, k) ground-truth pixels.
        fit_idx: fit pixel indices.
        eval_idx: held-out pixel indices.
    """
    from skimage.transform import resize  # heavy, reference only
    from sklearn.linear_model import LinearRegression

    feats = [resize(m[None], (1, m.shape[0], size, size), order=1) for m in maps]
    X = np.concatenate(feats, axis=1).squeeze(0)
    X = X.reshape(X.shape[0], -1).T
    model = LinearRegression().fit(X[fit_idx], y[fit_idx])
    return float(np.abs(model.predict(X[eval_idx]) - y[eval_idx]).mean())


class PredictabilityError:
    """Per-sample predictability error, batched on a device.

    Args:
        backbone: frozen feature extractor (its device is where everything runs).
        fit_fraction: share of the pixels that fit the regression (0.7).
        feature_size: side of the upsampled feature grid and of the resized ground truth.
        seed: seeds the per-sample pixel split together with the sample id.
        dtype: dtype of the regression solve.
        batch_size: images solved together.
    """

    def __init__(
        self,
        backbone: FeatureBackbone,
        fit_fraction: float = 0.7,
        feature_size: int = 56,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        batch_size: int = 8,
    ) -> None:
        split_sizes(feature_size * feature_size, fit_fraction)  # validates fit_fraction
        self.backbone = backbone
        self.fit_fraction = fit_fraction
        self.feature_size = feature_size
        self.seed = seed
        self.dtype = dtype
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, sample_ids: Sequence[str]
    ) -> torch.Tensor:
        """(B,) predictability errors of query ``inputs`` and their ground-truth ``targets``."""
        if len(sample_ids) != inputs.shape[0] or targets.shape[0] != inputs.shape[0]:
            raise ValueError("inputs, targets and sample_ids must have the same batch size")
        gt = resize_ground_truth(targets, self.feature_size)
        y = gt.flatten(2).mT  # (B, P, channels)
        fit_idx, eval_idx = pixel_split(sample_ids, y.shape[1], self.fit_fraction, self.seed)
        with strict_float32():
            maps = self.backbone(inputs)
            return predictability_errors_from_features(
                maps, y, fit_idx, eval_idx, self.feature_size, self.dtype, self.batch_size
            )

    def describe(self) -> dict[str, Any]:
        """Split and solver settings that shape the errors (recorded with the scores)."""
        return {
            "fit_fraction": self.fit_fraction,
            "feature_size": self.feature_size,
            "seed": self.seed,
            "dtype": str(self.dtype).removeprefix("torch."),
            "cuda_tf32": False,  # strict_float32() around the backbone and the solve
        }


def membership_error_columns(
    reconstruction: torch.Tensor, predictability: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-sample columns of a membership-error attack: ``score = -(rec - pred)`` and the
    three terms (the image and the segmentation attacks differ only in how rec and pred are
    measured)."""
    predictability = predictability.to(reconstruction.device)
    membership = reconstruction - predictability
    return {
        "score": -membership,
        "reconstruction_error": reconstruction,
        "predictability_error": predictability,
        "membership_error": membership,
    }


class MembershipError(Attack):
    """Membership error attack: ``score = -(reconstruction error - predictability error)``.

    Args:
        name: short name used in result files and tables.
        weights: backbone weights, ``"imagenet"``, a local state_dict path or ``"none"``.
        arch: torchvision ResNet-family backbone.
        fit_fraction: share of pixels that fit the linear predictor.
        feature_size: side of the feature grid (56).
        seed: seed of the per-sample pixel split.
        dtype: dtype of the regression solve (``"float64"`` or ``"float32"``).
        batch_size: images per regression solve.
        quantize: quantise the victim output to 8-bit levels for the reconstruction error.
    """

    requires = ("input", "target", "output")

    def __init__(
        self,
        name: str = "membership_error",
        weights: str = "imagenet",
        arch: str = "wide_resnet50_2",
        fit_fraction: float = 0.7,
        feature_size: int = 56,
        seed: int = 0,
        dtype: str = "float64",
        batch_size: int = 8,
        quantize: bool = True,
    ) -> None:
        super().__init__(name)
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got '{dtype}'")
        self.quantize = quantize
        self.backbone = FeatureBackbone(arch=arch, weights=weights)
        self.predictability = PredictabilityError(
            self.backbone, fit_fraction, feature_size, seed, getattr(torch, dtype), batch_size
        )

    def setup(self, device: torch.device | str) -> None:
        """Move the backbone to ``device``; features and solves then run there."""
        super().setup(device)
        self.backbone.to(self.device)

    def score(self, signals: Signals) -> dict[str, torch.Tensor]:
        """Score one batch; diagnostics are the two error terms and their difference."""
        rec = reconstruction_error(signals["output"], signals["target"], self.quantize)
        pred = self.predictability(signals["input"], signals["target"], signals["sample_id"])
        return membership_error_columns(rec, pred)

    def describe(self) -> dict[str, Any]:
        """Backbone, split and solver settings that shaped the scores."""
        return {
            **super().describe(),
            **self.backbone.describe(),
            **self.predictability.describe(),
            "quantize": self.quantize,
        }
