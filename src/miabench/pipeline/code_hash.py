"""Hashes of the code that shaped a victim or an attack folder.

A cached victim or attack folder is keyed by the source of every ``miabench`` module its
config names through ``_target_`` and every ``miabench`` module those import, transitively,
so editing that code gives a new key instead of a stale result, and editing unrelated code
keeps it.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

import miabench
import miabench.victims as victims_package
from miabench.defenses.setting import POST_HOC_KEYS, DefenseSetting
from miabench.utils.config import to_container
from miabench.utils.hashing import stable_hash

#: Defense keys that do not change the trained victim (owned by the defense setting).
POST_HOC_DEFENSE_KEYS = POST_HOC_KEYS
#: Victim keys of an imported model (issue 28): they shape only an imported victim, so a
#: trained victim's key and code hash leave them out.
IMPORT_VICTIM_KEYS = {"checkpoint", "checkpoint_reader"}

#: Victim keys that shape nothing by themselves: ``monitor`` names the validation metric
#: the victim logs, read by defense=early_stopping, whose resolved ``monitor`` is in the
#: defense part of the key (so adding it to a victim config left undefended keys as they
#: were).
LABEL_VICTIM_KEYS = {"monitor"}


def victim_config(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.victim`` as a container, without the import keys unless a checkpoint is set."""
    victim = {k: v for k, v in to_container(cfg.victim).items() if k not in LABEL_VICTIM_KEYS}
    if not victim.get("checkpoint"):
        victim = {k: v for k, v in victim.items() if k not in IMPORT_VICTIM_KEYS}
    return victim


def config_targets(node: Any) -> list[str]:
    """Every ``_target_`` string anywhere under a config container, depth first."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            found.append(node["_target_"])
        for value in node.values():
            found += config_targets(value)
    elif isinstance(node, list):
        for value in node:
            found += config_targets(value)
    return found


def _source(module: str) -> Path | None:
    """File of a ``miabench`` module, or None when ``module`` names no module of ours."""
    if module != "miabench" and not module.startswith("miabench."):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _own_imports(path: Path) -> set[str]:
    """Modules of ``miabench`` that the file at ``path`` imports (statically)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from miabench.victims.nets import unet`` imports a module, not a name
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if _source(m) is not None}


def code_version(cfg: DictConfig | None = None) -> str:
    """Hash of the code that shaped a victim: the sources :func:`code_sources` lists."""
    return stable_hash({"version": miabench.__version__, "sources": code_sources(cfg)})


def code_sources(cfg: DictConfig | None = None) -> dict[str, str]:
    """Module name → source of the code that shaped a victim.

    The sources of every ``miabench`` module named by a ``_target_`` under ``cfg.victim``
    and ``cfg.defense`` (the LightningModule, its networks, the defense), plus every
    ``miabench`` module those import, transitively. Editing any of them changes the key, so
    a stale cached victim is never reused; adding another victim, or editing attacks and
    metrics the victim does not import, leaves it valid. Without ``cfg``: the whole
    :mod:`miabench.victims` package (conservative).
    """
    if cfg is None:
        root = Path(victims_package.__file__).parent
        modules = {
            f"miabench.victims.{p.relative_to(root).with_suffix('')}" for p in root.rglob("*.py")
        }
        modules = {m.replace("/", ".").removesuffix(".__init__") for m in modules}
        return module_closure(modules)
    # A post-hoc defense's attacker_view does not shape the victim (see victim_key).
    defense = DefenseSetting.of(cfg).key_fields()
    return module_closure(target_modules(victim_config(cfg)) | target_modules(defense))


def target_modules(node: Any) -> set[str]:
    """``miabench`` modules named by the ``_target_`` keys anywhere under ``node``."""
    modules: set[str] = set()
    for target in config_targets(node):
        # a target names a module's attribute (class or function), or a module itself
        for candidate in (target.rsplit(".", 1)[0], target):
            if _source(candidate) is not None:
                modules.add(candidate)
    return modules


def module_closure(modules: set[str]) -> dict[str, str]:
    """Module name → source of ``modules`` and every ``miabench`` module they import,
    transitively (static imports)."""
    seen: dict[str, str] = {}
    todo = sorted(modules)
    while todo:
        module = todo.pop()
        path = _source(module)
        if module in seen or path is None:
            continue
        seen[module] = path.read_text(encoding="utf-8")
        todo.extend(sorted(_own_imports(path) - set(seen)))
    return seen


#: Modules whose code decides an attack folder's metrics besides the attacks themselves:
#: the metric functions and the stage that splits, scores and evaluates (its halves and
#: held-out metrics live beside it). Only their own source counts (not what they import:
#: the victim's code is already in the victim key).
ATTACK_STAGE_MODULES = (
    "miabench.pipeline.attack",
    "miabench.pipeline.halves",
    "miabench.pipeline.record",
)
METRICS_PACKAGE = "miabench.metrics"


def attack_code_version(cfg: DictConfig, stages: tuple[str, ...] = ATTACK_STAGE_MODULES) -> str:
    """Hash of the code that shaped an attack folder's scores and metrics.

    The modules named by ``cfg.attack``'s ``_target_``s and the defense's ``attacker_view``
    (with their ``miabench`` imports, transitively), every module of :mod:`miabench.metrics`
    (and its imports), and the attack stage's own source. Editing an attack or a metric
    therefore gives a new attack folder instead of returning the old scores. ``stages``:
    the stage modules whose own source counts (the reference-attack stage names its own).
    """
    attack_modules = target_modules(to_container(cfg.attack))
    view = DefenseSetting.of(cfg).attacker_view_spec
    if view is not None:
        attack_modules |= target_modules({"view": view})
    metrics_root = Path(importlib.util.find_spec(METRICS_PACKAGE).origin).parent
    metrics = {f"{METRICS_PACKAGE}.{p.stem}" for p in metrics_root.glob("*.py")}
    metrics = {m.removesuffix(".__init__") for m in metrics}
    sources = module_closure(attack_modules | metrics)
    for module in stages:
        path = _source(module)
        if path is not None:
            sources[module] = path.read_text(encoding="utf-8")
    return stable_hash({"version": miabench.__version__, "sources": sources})
