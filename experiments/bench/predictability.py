"""Time the per-image sklearn reference of the predictability error against the batched solver.

Both sides get the same native feature maps (layer1..layer4 of wide_resnet50_2's shapes),
the same ground truth and the same pixel splits, on the CPU:

(a) the reference, per image: skimage ``resize(..., order=1)`` of each map to 56x56,
    concatenation (3136 x 3840), sklearn ``LinearRegression`` on the 2195 fit pixels, mean
    absolute error on the 941 others. As in the reference the maps are float32 network
    outputs, so skimage and sklearn compute in float32; the same resized features upcast
    to float64 give the exact minimum-norm answer (timed too, reported separately).
(b) ``predictability_errors_from_features``: exact low-rank reduction + batched solve.

Features are random non-negative maps by default (``--features random``) or the maps of a
randomly initialised wide_resnet50_2 (``--features backbone``, weights ``none``) on random
smooth images; no pretrained weights are needed.

Usage:
    python experiments/bench/predictability.py --images 8 --dtype float64 --batch 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from miabench.attacks.predictability.backbone import FeatureBackbone
from miabench.attacks.predictability.error import pixel_split, predictability_errors_from_features
from miabench.attacks.predictability.reference import reference_predictability_error

SHAPES = [(256, 56), (512, 28), (1024, 14), (2048, 7)]
SIZE = 56


def make_inputs(n: int, kind: str, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Native maps (float32, as a network returns them) and 56x56 RGB ground truth."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        maps = [
            np.maximum(rng.standard_normal((n, c, s, s)), 0).astype(np.float32) for c, s in SHAPES
        ]
    else:
        coarse = torch.from_numpy(rng.random((n, 3, 8, 8))).float()
        images = torch.nn.functional.interpolate(coarse, size=(256, 256), mode="bicubic")
        backbone = FeatureBackbone(arch="wide_resnet50_2", weights="none")
        maps = [m.numpy() for m in backbone(images.clamp(0, 1))]
    # Ground truth in 8-bit levels, as ToTensor of a resized uint8 image gives.
    y = rng.integers(0, 256, (n, SIZE * SIZE, 3)).astype(np.float64) / 255.0
    return maps, y


def time_reference(maps, y, fit, held, dtype) -> tuple[np.ndarray, float]:
    """Per-image reference loop; returns the errors and seconds per image."""
    errors = []
    start = time.perf_counter()
    for i in range(y.shape[0]):
        errors.append(
            reference_predictability_error(
                [m[i].astype(dtype) for m in maps], y[i].astype(dtype), fit[i], held[i]
            )
        )
    return np.array(errors), (time.perf_counter() - start) / y.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--batch", type=int, default=4, help="images per batched solve")
    parser.add_argument("--features", choices=["random", "backbone"], default="random")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the batched solver")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU threads of both sides: torch's and the reference's BLAS. On a shared 2-core "
        "machine use 1: with 2, any other busy process makes multithreaded BLAS/LAPACK "
        "spin-wait (OpenBLAS's lstsq ~20x slower, torch's MKL ~2x).",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    maps, y = make_inputs(args.images, args.features, args.seed)
    fit_t, held_t = pixel_split([f"img{i}" for i in range(args.images)], SIZE * SIZE)
    fit, held = fit_t.numpy(), held_t.numpy()
    print(
        f"{args.images} images, {args.features} features {[m.shape[1:] for m in maps]}, "
        f"{fit.shape[1]} fit / {held.shape[1]} held-out pixels"
    )
    # Other processes on the cores distort multithreaded timings badly (see --threads).
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    # (a) the reference loop.
    with threadpool_limits(limits=args.threads, user_api="blas"):
        pools = ", ".join(f"{p['internal_api']}:{p['num_threads']}" for p in threadpool_info())
        reference_predictability_error([m[0] for m in maps], y[0], fit[0], held[0])  # warm-up
        ref32, t_ref32 = time_reference(maps, y, fit, held, np.float32)
        ref64, t_ref64 = time_reference(maps, y, fit, held, np.float64)

    # (b) the batched reduced solver on the same maps, targets and splits.
    maps_t = [torch.from_numpy(m) for m in maps]
    y_t = torch.from_numpy(y)
    dtype = getattr(torch, args.dtype)
    predictability_errors_from_features(
        [m[:1] for m in maps_t], y_t[:1], fit_t[:1], held_t[:1], SIZE, dtype
    )  # warm-up: interpolation matrices, BLAS/LAPACK initialisation
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = predictability_errors_from_features(
            maps_t, y_t, fit_t, held_t, SIZE, dtype, batch_size=args.batch
        ).numpy()
        times.append((time.perf_counter() - start) / args.images)
    t_ours = statistics.median(times)

    print(f"threads: torch {torch.get_num_threads()}; reference thread pools {pools}")
    print(f"reference, float32 as published (resize + sklearn): {t_ref32:.3f} s/image")
    print(f"reference, float64 features (exact min-norm):       {t_ref64:.3f} s/image")
    print(
        f"batched reduced solver ({args.dtype}, batch {args.batch}): {t_ours:.4f} s/image "
        f"(median of {args.repeats}; min {min(times):.4f})"
    )
    print(f"speed-up vs float32 reference: {t_ref32 / t_ours:.1f}x")
    print(f"speed-up vs float64 reference: {t_ref64 / t_ours:.1f}x")
    print(f"max |ours - float64 reference| = {np.abs(ours - ref64).max():.3e}")
    print(f"max |ours - float32 reference| = {np.abs(ours - ref32).max():.3e}")
    print(f"max |float32 ref - float64 ref| = {np.abs(ref32 - ref64).max():.3e}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
