"""Hydra app: the local audit web app. ``python -m miabench.serve``.

Serves the attack folders ``serve.models`` names, or every one under ``paths.output_dir``,
on ``serve.host:serve.port`` (127.0.0.1 unless told otherwise). docs/serve.md.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

log = logging.getLogger("miabench.serve")

#: Hydra's global state is one per process: composing the served runs' configs is serialised
_COMPOSE_LOCK = threading.Lock()


def compose_run(overrides: Sequence[str], root: Path) -> DictConfig:
    """The config of a recorded run: ``run_attack`` composed with its overrides, under the
    server's ``paths.root_dir``."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    with _COMPOSE_LOCK:
        # this app's own Hydra context is done with once the server runs
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="miabench.conf", version_base="1.3"):
            return compose("run_attack", overrides=[*overrides, f"paths.root_dir={root}"])


def build(cfg: DictConfig, compose: Any = None) -> Any:
    """The FastAPI app for ``cfg`` (the ``serve`` config): its models found and, with
    ``serve.preload``, loaded."""
    from miabench.utils.extras import require_extra

    require_extra("serve")  # a missing FastAPI is named with its extra, not a bare import error
    from miabench.serve.app import AuditService, create_app
    from miabench.serve.auditor import Auditor
    from miabench.serve.models import find_models

    settings = cfg.serve
    root = Path(cfg.paths.root_dir)
    models = find_models(Path(cfg.paths.output_dir), list(settings.models), settings.attack)
    log.info("serving %d model(s): %s", len(models), ", ".join(models) or "none")
    compose = compose or (lambda overrides: compose_run(overrides, root))
    auditors = {k: Auditor(entry, root, compose, settings) for k, entry in models.items()}
    if settings.preload:
        for auditor in auditors.values():
            auditor.load()
    return create_app(AuditService(auditors, settings.workers, settings.queue), settings)


@hydra.main(version_base="1.3", config_path="pkg://miabench.conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    """Start the server (blocks until interrupted)."""
    # Imported here, not at the top: torch and the victims take seconds to import, and
    # `--help` or a config error should not wait for them.
    import uvicorn

    from miabench.pipeline.logging_hooks import silence_lightning_tips

    silence_lightning_tips()
    app = build(cfg)
    if cfg.serve.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: other machines can reach this server", cfg.serve.host)
    uvicorn.run(app, host=str(cfg.serve.host), port=int(cfg.serve.port), log_level="info")


if __name__ == "__main__":
    main()
