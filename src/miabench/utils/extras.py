"""Optional dependencies: what each extra brings, and the one message when it is missing.

Only some users need DP-SGD (``opacus``, extra ``[dp]``), detection mAP (``pycocotools``,
extra ``[detection]``), SLURM (``hydra-submitit-launcher``, extra ``[slurm]``) or the audit
web app (FastAPI and uvicorn, extra ``[serve]``).
``scripts/install.sh`` installs them all; a lighter ``pip install miabench`` does not, and
then the feature that needs one fails at once with the extra's name instead of a bare
``ModuleNotFoundError`` deep in a stage (or, for a launcher, Hydra's "Could not find").
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

#: extra → (module whose presence proves it, what it is for)
EXTRAS = {
    "dp": ("opacus", "DP-SGD training (defense=dpsgd*)"),
    "detection": ("pycocotools", "detection mAP (torchmetrics' MeanAveragePrecision)"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "SLURM sweeps (hydra/launcher=slurm)"),
    "serve": ("fastapi", "the local audit web app (python -m miabench.serve)"),
}

#: Hydra launcher configs (``hydra/launcher=<name>``) that need an extra
LAUNCHER_EXTRAS = {"slurm": "slurm", "submitit_slurm": "slurm", "submitit_local": "slurm"}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is missing; the message names the extra that installs it."""


def missing_extra(extra: str) -> MissingExtraError:
    """The error for a missing ``extra``: what needs it and the pip command."""
    module, what = EXTRAS[extra]
    return MissingExtraError(
        f"{what} needs the optional dependency '{module.split('.')[-1]}', which is not "
        f"installed: `pip install 'miabench[{extra}]'` (scripts/install.sh installs every "
        "extra)"
    )


def has_extra(extra: str) -> bool:
    """Whether the module that ``extra`` installs is importable."""
    module = EXTRAS[extra][0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def require_extra(extra: str) -> None:
    """Raise :class:`MissingExtraError` unless ``extra`` is installed."""
    if not has_extra(extra):
        raise missing_extra(extra)


def check_launcher(argv: Sequence[str] | None = None) -> None:
    """Before Hydra composes: exit with the extra's name if the chosen launcher needs one.

    Hydra resolves ``hydra/launcher=slurm`` while composing, before any miabench code runs,
    and a missing plugin then reads "Could not find 'hydra/launcher/submitit_slurm'".
    """
    argv = sys.argv[1:] if argv is None else argv
    for arg in argv:
        name, _, value = arg.lstrip("+~").partition("=")
        if name == "hydra/launcher" and value in LAUNCHER_EXTRAS:
            extra = LAUNCHER_EXTRAS[value]
            if not has_extra(extra):
                sys.exit(f"{arg}: {missing_extra(extra)}")


def missing_extra_in(err: BaseException) -> MissingExtraError | None:
    """The :class:`MissingExtraError` behind ``err`` (Hydra wraps import errors twice)."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, MissingExtraError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None
