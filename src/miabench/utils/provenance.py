"""Provenance of a result: which code, packages, overrides, device and time produced it.

Every ``results.json`` carries this block so a table row can be traced to the commit (and
whether the tree had uncommitted changes), the versions of the libraries that computed it,
the Hydra overrides that composed its config, the device, and when and how long each stage
ran.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions shape results (model code, training loop, configs, metrics, DP).
TRACKED_PACKAGES = (
    "torch",
    "torchvision",
    "lightning",
    "hydra-core",
    "segmentation-models-pytorch",
    "timm",
    "torchmetrics",
    "opacus",
    "scikit-learn",
    "numpy",
)


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


#: modified files listed in a dirty checkout's provenance (the rest are counted)
MAX_DIRTY_FILES = 50


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """Commit of the checkout that holds ``path`` (default: this package's source) and
    whether its tree differs from that commit (and, if so, which tracked files).

    Returns ``{"commit": None, "dirty": None}`` outside a git checkout (an installed wheel):
    the package version then identifies the code.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {"commit": None, "dirty": None}
    # -z: NUL-separated and unquoted paths (a path with spaces stays as it is)
    status = _git(["status", "--porcelain", "-z", "--untracked-files=no"], where)
    if status is None:
        return {"commit": commit, "dirty": None}
    state: dict[str, Any] = {"commit": commit, "dirty": bool(status)}
    if status:
        # which tracked files differ (e.g. only results/ the run itself rewrote, or code)
        # "XY path" per entry (the output arrives stripped, so the first X may be gone; a
        # rename's second entry is the bare old path, skipped)
        entries = [e.split(maxsplit=1) for e in status.split("\0") if e.strip()]
        changed = [e[1] for e in entries if len(e) == 2]
        state["dirty_files"] = changed[:MAX_DIRTY_FILES]
        if len(changed) > MAX_DIRTY_FILES:
            state["dirty_files_omitted"] = len(changed) - MAX_DIRTY_FILES
    return state


#: The checkout's state when this process imported miabench: the code a long-running
#: process (a sweep) runs is the code it loaded, even if the checkout moves on meanwhile.
_STARTUP_GIT: dict[str, Any] | None = None


def process_git_state() -> dict[str, Any]:
    """:func:`git_state` as it was when this module was first imported by the process."""
    global _STARTUP_GIT
    if _STARTUP_GIT is None:
        _STARTUP_GIT = git_state()
    return _STARTUP_GIT


def hydra_overrides() -> list[str]:
    """The command-line overrides of the running Hydra job ([] outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return []
        return list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - provenance must never break a run
        return []


def environment(device: Any = None) -> dict[str, Any]:
    """Code, packages, overrides and machine of the current process."""
    info: dict[str, Any] = {
        "git": process_git_state(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": platform.node(),
        "overrides": hydra_overrides(),
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        # CPU float sums are split across threads: the same seed and code can train a
        # slightly different victim with another thread count
        info["torch_threads"] = torch.get_num_threads()
    if device is not None:
        info["device"] = str(device)
        try:
            import torch

            from miabench.utils.device import device_label

            # "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)": which card, not just its kind
            info["device"] = device_label(device)
            if str(device).startswith("cuda") and torch.cuda.is_available():
                info["device_name"] = torch.cuda.get_device_name(torch.device(device))
        except Exception:  # noqa: BLE001 - provenance must never break a run
            pass
    return info


class StageClock:
    """Start/end times and wall time of named stages, e.g. ``{"attack": {...}}``."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, Any]] = {}

    @contextmanager
    def stage(self, name: str) -> Any:
        """Time the body as stage ``name`` (recorded even when it raises)."""
        started, t0 = now_iso(), time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = {
                "started": started,
                "finished": now_iso(),
                "wall_time_s": round(time.perf_counter() - t0, 3),
            }


process_git_state()  # at import: the state of the code this process loads
