"""Time the membership-error attack's pass against the backbone forward it needs.

The default benchmark (``conf/experiment/embedded/pix2pix_edges2fashion.yaml``) attacks
64x64 images with an untrained wide_resnet50_2 (``weights: none``), 32 images per batch.
This script feeds ``MembershipError.score`` batches of that shape (smooth random inputs,
smooth random targets, victim outputs = targets + noise: the attack's cost does not depend
on what the victim learnt) and times, batch by batch and interleaved so that a busy machine
slows both alike:

(a) the backbone forward alone (``attack.backbone(inputs)``: preprocessing + ResNet), and
(b) the whole ``attack.score`` (forward, ground-truth resize, pixel split, per-image linear
    predictor, reconstruction error),

and prints seconds per image and the ratio (b) / (a). ``--save`` / ``--compare`` write and
check the scores, so two code versions can be shown to give the same numbers (1e-4).

``--victim-pass`` also times what each pass of ``run_attack`` adds around the attack: the
data loading and the victim's ``iter_signals`` over the benchmark's 264 members and
non-members (an untrained pix2pix of the benchmark's shape: its cost does not depend on its
weights). The utility pass and every attack pass each pay it once.

Usage (one thread, as the benchmark's CPU budget assumes; set --threads 2 for an idle box):
    OMP_NUM_THREADS=1 python experiments/bench/membership_error_pass.py --images 64
    python experiments/bench/membership_error_pass.py --save /tmp/before.pt  # old code
    python experiments/bench/membership_error_pass.py --compare /tmp/before.pt  # new code
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from miabench.attacks.predictability.membership_error import MembershipError


def make_batch(n: int, size: int, seed: int) -> dict:
    """Smooth random inputs, targets and victim outputs in [0, 1] (pix2pix-like shapes)."""
    gen = torch.Generator().manual_seed(seed)

    def smooth() -> torch.Tensor:
        coarse = torch.rand(n, 3, 8, 8, generator=gen)
        return F.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1)

    inputs, targets = smooth(), smooth()
    outputs = (targets + 0.05 * torch.randn(targets.shape, generator=gen)).clamp(0, 1)
    ids = [f"train/{seed}_{i}.jpg" for i in range(n)]
    return {"sample_id": ids, "input": inputs, "target": targets, "output": outputs}


def victim_pass(forward_per_image: float) -> None:
    """CPU seconds per image of one signal pass of ``run_attack`` on the default benchmark."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from miabench.pipeline.train import locate_victim

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("run_attack", overrides=["experiment=embedded/pix2pix_edges2fashion"])
    dm = locate_victim(cfg).datamodule  # builds the embedded data under ./data once
    model = instantiate(cfg.victim.module).eval()
    loaders = [dm.member_dataloader(), dm.nonmember_dataloader()]
    start, n = time.process_time(), 0
    for loader in loaders:
        for signals in model.iter_signals(loader, device=torch.device("cpu"), desc="signals"):
            n += len(signals["sample_id"])
    per_image = (time.process_time() - start) / n
    print(
        f"victim pass (data + pix2pix signals, {n} images): {per_image:.4f} cpu-s/image "
        f"= {per_image / forward_per_image:.2f} x the backbone forward"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--images", type=int, default=64, help="images in all (264 in make benchmark)"
    )
    parser.add_argument("--batch", type=int, default=32, help="eval batch size (edges2fashion: 32)")
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--arch", default="wide_resnet50_2")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--save", help="write the scores to this file")
    parser.add_argument("--compare", help="check the scores against a file written by --save")
    parser.add_argument(
        "--victim-pass", action="store_true", help="also time data loading + victim signals"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    attack = MembershipError("membership_error", weights=args.weights, arch=args.arch)
    attack.setup("cpu")
    attack.score(make_batch(2, args.size, seed=-1))  # warm-up: allocator, interpolation caches

    # wall clock and process CPU time: on a shared machine the CPU time (all threads of this
    # process) is the steadier measure of the work done
    clocks = {"wall": time.perf_counter, "cpu": time.process_time}
    forward = dict.fromkeys(clocks, 0.0)
    whole = dict.fromkeys(clocks, 0.0)
    scores = []
    for start in range(0, args.images, args.batch):
        batch = make_batch(min(args.batch, args.images - start), args.size, seed=start)
        t0 = {k: c() for k, c in clocks.items()}
        attack.backbone(batch["input"])
        t1 = {k: c() for k, c in clocks.items()}
        scores.append(attack.score(batch)["score"])
        t2 = {k: c() for k, c in clocks.items()}
        for k in clocks:
            forward[k] += t1[k] - t0[k]
            whole[k] += t2[k] - t1[k]
        print(
            f"batch {start // args.batch}: forward {t1['wall'] - t0['wall']:.1f} s, "
            f"pass {t2['wall'] - t1['wall']:.1f} s (wall)"
        )
    n = args.images
    print(
        f"{n} images of {args.size}x{args.size}, {args.arch} (weights {args.weights}), "
        f"{torch.get_num_threads()} thread(s)"
    )
    for k in clocks:
        print(
            f"{k:4s}: backbone forward {forward[k] / n:.3f} s/image; whole pass "
            f"{whole[k] / n:.3f} s/image (beyond the forward {(whole[k] - forward[k]) / n:.3f}); "
            f"ratio pass / forward = {whole[k] / forward[k]:.2f}"
        )
    if args.victim_pass:
        victim_pass(forward["cpu"] / n)
    result = torch.cat(scores)
    if args.save:
        torch.save(result, args.save)
    if args.compare:
        diff = (result - torch.load(args.compare)).abs().max().item()
        print(
            f"max |score - saved score| = {diff:.2e} ({'equal' if diff <= 1e-4 else 'DIFFERENT'})"
        )


if __name__ == "__main__":
    main()
