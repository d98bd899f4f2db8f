"""The contract between defenses and the training stage.

A *training defense* changes how a victim is trained, never the victim's code: it acts
through generic mechanisms (module traversal, optimizer param groups, Lightning callbacks, a
wrapper around the data module), so it applies to every victim, including ones written
later, or says clearly why it cannot. ``miabench/conf/defense/<name>.yaml`` names it under
``training`` (a ``_target_``); a post-hoc defense (output truncation) names an
``attacker_view`` instead and needs no training hook.

``pipeline/train.py`` calls, in order: :meth:`Defense.prepare_module` (also when a trained
victim is loaded back, so structural changes such as BatchNorm → GroupNorm match the saved
weights), :meth:`Defense.prepare_datamodule`, :meth:`Defense.callbacks`, ``trainer.fit`` and
finally :meth:`Defense.report`, stored under ``defense`` in ``victim.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from lightning.pytorch.utilities.model_helpers import is_overridden
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, RandomSampler

from miabench.utils.extras import MissingExtraError, missing_extra_in


class DefenseNotApplicable(ValueError):
    """A defense cannot apply to this victim or data (names both and says why)."""


class Defense:
    """Base class: every hook is a no-op, so a defense overrides only what it changes."""

    #: label used in error messages
    name: str = "defense"

    def prepare_module(self, module: pl.LightningModule) -> None:
        """Change the module in place before training *and* before loading trained weights.

        Only deterministic, structural changes belong here (the loaded victim must have the
        same parameters and buffers as the trained one).
        """

    def prepare_datamodule(self, datamodule: Any) -> Any:
        """Return the data module to fit on (``datamodule`` itself, or a wrapper)."""
        return datamodule

    def callbacks(self) -> list[pl.Callback]:
        """Lightning callbacks to add to the trainer."""
        return []

    def report(self) -> dict[str, Any]:
        """What the defense did or measured (hyper-parameters, DP ε, ...), JSON-friendly."""
        return {}


class NoDefense(Defense):
    """The undefended victim (``defense=none`` and post-hoc defenses)."""

    name = "none"


def build_defense(cfg: DictConfig) -> Defense:
    """Instantiate ``cfg.defense.training`` or return :class:`NoDefense` when absent.

    Raises:
        TypeError: naming the config key when the target is not a :class:`Defense`.
    """
    return build_training_defense((cfg.get("defense") or {}).get("training"))


def build_training_defense(spec: Any) -> Defense:
    """Instantiate a ``defense.training`` spec, or :class:`NoDefense` for ``None``.

    Raises:
        TypeError: naming the config key when the target is not a :class:`Defense`.
        MissingExtraError: the defense needs an extra that is not installed ([dp]).
    """
    if spec is None:
        return NoDefense()
    try:
        defense = instantiate(spec)
    except Exception as err:
        # Hydra reports "Error locating target"; a missing extra ([dp]) says what to install
        missing = missing_extra_in(err)
        if missing is None:
            raise
        raise MissingExtraError(f"defense.training: {missing}") from err
    if not isinstance(defense, Defense):
        raise TypeError(
            f"defense.training (_target_ {spec.get('_target_')}) built a "
            f"{type(defense).__name__}, not a miabench.defenses.base.Defense"
        )
    return defense


class MappedDataset(Dataset):
    """A dataset whose items pass through ``fn`` (e.g. a paired augmentation)."""

    def __init__(self, dataset: Dataset, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.dataset = dataset
        self.fn = fn

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.fn(self.dataset[index])


def loader_like(loader: DataLoader, dataset: Dataset) -> DataLoader:
    """A loader over ``dataset`` with ``loader``'s batching, shuffling and collation."""
    return DataLoader(
        dataset,
        batch_size=loader.batch_size,
        shuffle=isinstance(loader.sampler, RandomSampler),
        drop_last=loader.drop_last,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        persistent_workers=loader.persistent_workers,
    )


class WrappedDataModule(pl.LightningDataModule):
    """A data module whose training loader is transformed; everything else is delegated.

    Works with any LightningDataModule (the way :class:`opacus.lightning.DPLightningDataModule`
    wraps one), so defenses never need to know how a victim's data is organised.

    Args:
        datamodule: the data module to wrap (set up or not).
        train_loader: ``loader -> loader`` applied to ``datamodule.train_dataloader()``.
    """

    def __init__(self, datamodule: Any, train_loader: Callable[[DataLoader], DataLoader]) -> None:
        super().__init__()
        self.datamodule = datamodule
        self.transform_loader = train_loader

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.datamodule.setup(stage)

    def train_dataloader(self) -> DataLoader:
        return self.transform_loader(self.datamodule.train_dataloader())

    def val_dataloader(self) -> Any:
        # An empty list makes Lightning skip validation, as for a module without one
        # (LightningDataModule's default val_dataloader raises instead).
        if hasattr(self.datamodule, "val_dataloader") and is_overridden(
            "val_dataloader", self.datamodule, parent=pl.LightningDataModule
        ):
            return self.datamodule.val_dataloader()
        return []

    def __getattr__(self, name: str) -> Any:
        # manifest, member_dataloader, ...: whatever the wrapped module offers
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["datamodule"], name)
