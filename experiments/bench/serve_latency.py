"""Per-image report latency of the audit web app (python -m miabench.serve), over real HTTP.

For each model: the server (as ``python -m miabench.serve`` builds it, default settings:
one worker thread, a queue of 16) runs in this process on a free local port; the model is
loaded before timing (not timed); then one client sends 20 requests one after another, and
8 clients send 20 each at the same time. Each request uploads one image and asks for the
HTML report page (score, calibrated probability with its bootstrap interval, percentiles,
decisions, histograms, the processed input): the per-image report a person reads. The JSON
API (``POST /api/audit``) is timed the same way. Any status other than 200 is a failure.
The machine's load average (``os.getloadavg``, what ``uptime`` prints) is recorded before
and after every measurement: on a shared machine it says how pessimistic the times are.

    MIABENCH_ROOT=/path/with/outputs python experiments/bench/serve_latency.py \
        --pix2pix outputs/defenses_pix2pix/attacks/<run> --mint outputs/attacks/<run> \
        [--conf conf] [--screenshots docs/images]

Writes results/serve_latency/serve_latency.{json,md} (or --out).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from miabench.serve.__main__ import build
from miabench.utils.io import atomic_write_json, atomic_write_text, read_json


def _png(tensor: torch.Tensor) -> bytes:
    array = (tensor.clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def images_of(app: Any, model_id: str, n: int) -> list[tuple[str, bytes]]:
    """``n`` images in the model's upload layout: the dataset's own files, re-encoded."""
    auditor = app.state.service.auditor(model_id).load()
    dataset = auditor.dataset
    images = []
    for index in range(n):
        item = dataset[index % len(dataset)]
        if item["target"].ndim == 3:  # a pair: input | target side by side, as stored
            pair = torch.cat([item["input"], item["target"]], dim=2)
            images.append((f"{index}.png", _png(pair)))
        else:
            images.append((f"{index}.png", _png(item["input"])))
    return images


class Server:
    """The app on a free port, served by uvicorn in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def timed_requests(
    url: str, model_id: str, images: list[tuple[str, bytes]], api: bool, clients: int, n: int
) -> dict[str, Any]:
    """``clients`` clients x ``n`` requests of one image each; latencies and failures."""
    path = "/api/audit" if api else f"/models/{model_id}/audit"

    def client(c: int) -> list[tuple[float, int]]:
        out = []
        with httpx.Client(base_url=url, timeout=120) as session:
            for i in range(n):
                name, data = images[(c * n + i) % len(images)]
                start = time.perf_counter()
                response = session.post(
                    path, data={"model": model_id}, files=[("images", (name, data, "image/png"))]
                )
                out.append((time.perf_counter() - start, response.status_code))
        return out

    load_before = os.getloadavg()
    wall = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - wall
    load_after = os.getloadavg()
    latencies = sorted(t for t, _ in results)
    return {
        "endpoint": "api" if api else "report page",
        "clients": clients,
        "requests": len(results),
        "failed": sum(status != 200 for _, status in results),
        "p50_s": statistics.median(latencies),
        "p95_s": float(np.percentile(latencies, 95)),
        "max_s": latencies[-1],
        "throughput_per_s": len(results) / wall,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
    }


def _context(conf: Path | None) -> Any:
    """Hydra's config source: ``conf`` (a checkout's configs) or the installed package's."""
    GlobalHydra.instance().clear()
    if conf is not None:
        return initialize_config_dir(str(conf.resolve()), version_base="1.3")
    return initialize_config_module("miabench.conf", version_base="1.3")


def screenshots(url: str, model_id: str, image: tuple[str, bytes], out: Path) -> list[str]:
    """Models, upload and report pages as PNGs (headless Chromium via Selenium)."""
    import shutil
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        driver.get(url + "/")
        driver.save_screenshot(str(out / "serve_models.png"))
        driver.get(f"{url}/models/{model_id}")
        driver.save_screenshot(str(out / "serve_upload.png"))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / image[0]
            path.write_bytes(image[1])
            driver.find_element(By.ID, "images").send_keys(str(path))
            driver.find_element(By.ID, "submit").click()
            driver.set_window_size(1400, 1500)
            driver.save_screenshot(str(out / "serve_report.png"))
        written = ["serve_models.png", "serve_upload.png", "serve_report.png"]
    finally:
        driver.quit()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pix2pix", help="attack folder of a pix2pix run")
    parser.add_argument("--mint", help="attack folder of a MINT run")
    parser.add_argument(
        "--override", action="append", default=[], help="extra serve config override (repeatable)"
    )
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("results/serve_latency"))
    parser.add_argument(
        "--conf", type=Path, default=None, help="config folder (default: the package's configs)"
    )
    args = parser.parse_args()
    root = Path(os.environ.get("MIABENCH_ROOT", "."))
    rows: list[dict[str, Any]] = []
    runs = (("pix2pix membership error", args.pix2pix), ("MINT auditor", args.mint))
    for kind, folder in ((k, Path(f)) for k, f in runs if f):
        result = read_json(folder / "results.json")
        attacks = result["attacks"]
        # the MINT model serves its strongest MINT auditor (not the nearest-identity diagnostic)
        mint = [n for n in attacks if n.startswith("mint_")]
        attack = max(mint, key=lambda n: attacks[n]["auc"]) if mint else None
        overrides = [f"paths.root_dir={root}", f"serve.models=[{folder}]", *args.override]
        if attack and kind == "MINT auditor":
            overrides.append(f"serve.attack={attack}")
        with _context(args.conf):
            cfg = compose("serve", overrides=overrides)

        def compose_run(run_overrides: Any, conf: Path | None = args.conf) -> Any:
            # the served run's config from the same configs as the server's own
            with _context(conf):
                return compose("run_attack", [*run_overrides, f"paths.root_dir={root}"])

        start = time.perf_counter()
        app = build(cfg, compose_run)
        model_id = folder.name
        images = images_of(app, model_id, 40)
        load_s = time.perf_counter() - start
        with Server(app) as url:
            for api in (False, True):
                for clients in (1, args.clients):
                    row = timed_requests(url, model_id, images, api, clients, args.requests)
                    auditor = app.state.service.auditor(model_id)
                    row.update(
                        model=model_id,
                        kind=kind,
                        attack=auditor.entry.attack,
                        load_s=load_s,
                        refit=auditor.refit,
                        score_check=auditor.score_check,
                        calibration=auditor.calibration_summary(),
                    )
                    rows.append(row)
                    print(json.dumps(row))
            if args.screenshots is not None and kind.startswith("pix2pix"):
                screenshots(url, model_id, images[0], args.screenshots)
    env = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "serve_overrides": args.override,
        "nice": os.nice(0),  # 19 under the shared machine's rules: other jobs come first
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "serve_latency.json", {"environment": env, "rows": rows})
    lines = [
        "# Audit server latency (experiments/bench/serve_latency.py)",
        "",
        f"{env['cpu_count']} CPU cores, torch {env['torch_threads']} threads, one worker thread "
        "(serve.workers=1, serve.queue=16); one image per request; the model loaded before timing; "
        f"the bench ran at niceness {env['nice']}.",
        "",
        "| model | attack | endpoint | clients | requests | failed | p50 s | p95 s | max s "
        "| req/s | load avg (1 min) before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['attack']} | {r['endpoint']} | {r['clients']} | {r['requests']} "
            f"| {r['failed']} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | {r['max_s']:.3f} "
            f"| {r['throughput_per_s']:.1f} | {r['load_average_before'][0]:.1f} → "
            f"{r['load_average_after'][0]:.1f} |"
        )
    lines += ["", f"Serve overrides: {args.override or 'none (the defaults)'}."]
    for kind in dict.fromkeys(r["kind"] for r in rows):
        first = next(r for r in rows if r["kind"] == kind)
        lines.append(
            f"{kind}: model loaded in {first['load_s']:.1f} s; recorded samples scored again "
            f"{first['score_check']}; refit {first['refit']}; probabilities calibrated on "
            f"{first['calibration']['calibrated_on']} "
            f"({first['calibration']['n_calibration_members']} members, "
            f"{first['calibration']['n_calibration_nonmembers']} non-members)."
        )
    atomic_write_text(args.out / "serve_latency.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
