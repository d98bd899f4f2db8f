"""One short training and one attack pass per victim family, on the CPU or a GPU, timed.

For each family's embedded experiment (built from Fashion-MNIST, nothing downloaded) the
victim is trained with ``debug=fast`` (1 epoch of 2 batches, 8 members and 8 non-members)
through the pipeline's own ``train_victim``, then its signal pass (``Victim.iter_signals``,
the forward every attack reads: the backbone or generator plus the victim's signal step)
runs over the members and non-members on the same device. Printed per family: the device,
training images/s (images of the timed ``trainer.fit``, from ``victim.json``) and
attack-pass images/s. The same command runs unchanged on a machine without a GPU.

Usage:
    python experiments/bench/gpu_smoke.py                 # auto: a GPU when there is one
    python experiments/bench/gpu_smoke.py --device cpu --only pix2pix spade
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import miabench  # noqa: F401 - registers the config resolvers
from miabench.pipeline.train import train_victim
from miabench.utils.device import device_label, resolve_device

CONF = Path(__file__).resolve().parents[2] / "conf"

#: family -> its embedded experiment
FAMILIES = {
    "pix2pix": "embedded/pix2pix_edges2fashion",
    "pix2pixhd": "embedded/pix2pixhd_fashion_scenes",
    "spade": "embedded/spade_fashion_scenes",
    "upernet50": "embedded/upernet50_fashion_scenes",
    "hrnetv2": "embedded/hrnetv2_fashion_scenes",
    "infnet": "embedded/infnet_fashion_polyps",
    "pranet": "embedded/pranet_fashion_polyps",
    "ssdlite": "embedded/detection_ssdlite",
    "face_recognition": "embedded/mint_fashion_identities",
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_family(experiment: str, device: torch.device, root: Path) -> dict[str, float]:
    """Train one victim briefly and time its attack pass; images/s of both."""
    accelerator = "cpu" if device.type == "cpu" else "gpu"
    overrides = [
        f"experiment={experiment}",
        "debug=fast",
        f"paths.root_dir={root}",
        f"trainer.accelerator={accelerator}",
        "trainer.devices=1",
        "trainer.enable_progress_bar=false",
        f"evaluation.device={device}",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("run_attack", overrides=overrides)
    victim = train_victim(cfg)
    meta = victim.meta()
    batches = min(int(cfg.trainer.limit_train_batches), -(-8 // int(cfg.data.batch_size)))
    trained = batches * int(cfg.data.batch_size) * max(int(meta.get("epochs") or 1), 1)
    train_s = float(meta["timing"]["wall_time_s"])

    model = victim.load(cfg).to(device)
    dm = victim.datamodule
    loaders = [dm.member_dataloader(), dm.nonmember_dataloader()]
    # one batch first: CUDA context, cuDNN autotuning, lazy modules
    warm = model.iter_signals(loaders[0], device=device, desc="warm-up")
    next(warm)
    warm.close()
    _sync(device)
    start, seen = time.perf_counter(), 0
    for loader in loaders:
        for signals in model.iter_signals(loader, device=device, desc="attack pass"):
            seen += len(signals["sample_id"])
    _sync(device)
    attack_s = time.perf_counter() - start
    return {"train_ips": trained / train_s, "attack_ips": seen / attack_s, "images": seen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 | ...")
    parser.add_argument("--only", nargs="*", choices=sorted(FAMILIES), default=None)
    parser.add_argument("--root", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device = resolve_device(args.device)
    root = args.root or Path(tempfile.mkdtemp(prefix="gpu_smoke_"))
    print(f"device: {device_label(device)}; torch threads: {torch.get_num_threads()}")
    print(f"{'family':18s} {'train img/s':>12s} {'attack img/s':>13s}")
    for family in args.only or FAMILIES:
        started = time.perf_counter()
        result = run_family(FAMILIES[family], device, root)
        print(
            f"{family:18s} {result['train_ips']:12.1f} {result['attack_ips']:13.1f}"
            f"   ({result['images']} images attacked, {time.perf_counter() - started:.0f} s "
            "with data build)",
            flush=True,
        )


if __name__ == "__main__":
    main()
