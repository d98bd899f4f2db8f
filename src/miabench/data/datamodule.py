"""Lightning data module serving a membership split: members to train on, and the sets to attack."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader, Dataset

from miabench.data.declared import declared_split
from miabench.data.membership import Manifest, SampleRecord, make_split, split_membership
from miabench.data.population import Population

log = logging.getLogger(__name__)

#: ``(phase, augment) -> dataset``: a :class:`~miabench.data.base.MembershipDataset`
#: (``records()``, ``subset(ids)``).
DatasetFactory = Callable[..., Any]


class MembershipDataModule(pl.LightningDataModule):
    """Draws (or reloads) a membership split and serves loaders for each role.

    Args:
        dataset: called as ``dataset(phase=..., augment=...)``, e.g. a Hydra ``_partial_``
            of :class:`~miabench.data.aligned.AlignedDataset` with its root and sizes bound.
        members_from: phase the members (and validation samples) are drawn from.
        nonmembers_from: phase the non-members are drawn from (may equal ``members_from``).
        n_members: number of members; ``None`` takes all available.
        n_nonmembers: number of non-members; ``None`` takes all available.
        n_validation: held-out samples from the member phase for early stopping.
        seed: seed of the split.
        batch_size: training batch size.
        eval_batch_size: batch size of the member/non-member/validation loaders
            (``batch_size`` if None).
        num_workers: data loader worker processes.
        manifest_path: CSV to reuse the split from when it exists (after checking it matches
            the data), or to write a newly drawn split to.
        prepare: called without arguments in :meth:`prepare_data`, e.g. to build an embedded
            dataset once.
        collate_fn: batches items in every loader (e.g. detection items with per-image box
            lists); ``None`` keeps PyTorch's default collate.
        benchmark: evaluation-only data outside the membership split (e.g. LFW verification
            pairs, :class:`~miabench.data.lfw_pairs.VerificationPairs`), exposed as
            ``benchmark`` for the victim's ``benchmark_utility``; ``None``: none.
        population: reference-model population (``split.population``): ``n_models`` (M
            references; 0 = off, the ordinary split), ``pkeep``, ``seed`` and ``model``
            (0 = the target, 1..M the references). When on, the members and non-members of
            the ordinary split form a population, a samples x models membership matrix is
            drawn over it (:class:`~miabench.data.population.Population`, written beside the
            manifest as ``population-<hash>.csv``), and this module serves model
            ``model``'s column: its IN samples are the members, its OUT samples the
            non-members; validation samples stay validation for every model.
        max_audited: at most this many members and as many non-members are served to the
            attack stage (:meth:`member_dataloader`, :meth:`nonmember_dataloader`), a seeded
            draw from each role; training still uses every member. ``None``: all. A victim
            trained on millions of images (MINT on Glint360k) is then audited on a capped
            set instead of having every image scored by every auditor.
        members_list: text file declaring the members (``split.members_list``), one sample
            a line, a path relative to ``root`` (:mod:`miabench.data.declared`); with
            ``nonmembers_list`` it replaces the draw: every listed sample, the sizes
            ``n_members``/``n_nonmembers`` are not used. ``None``: drawn.
        nonmembers_list: text file declaring the non-members (``split.nonmembers_list``).
        root: ``data.root``, against which list lines are read.
    """

    def __init__(
        self,
        dataset: DatasetFactory,
        members_from: str = "train",
        nonmembers_from: str = "train",
        n_members: int | None = None,
        n_nonmembers: int | None = None,
        n_validation: int = 0,
        seed: int = 0,
        batch_size: int = 1,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        manifest_path: str | os.PathLike | None = None,
        prepare: Callable[[], Any] | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        benchmark: Any = None,
        population: dict[str, Any] | None = None,
        max_audited: int | None = None,
        members_list: str | os.PathLike | None = None,
        nonmembers_list: str | os.PathLike | None = None,
        root: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if (members_list is None) != (nonmembers_list is None):
            given, missing = (
                ("split.members_list", "split.nonmembers_list")
                if nonmembers_list is None
                else ("split.nonmembers_list", "split.members_list")
            )
            raise ValueError(f"{given} is set but {missing} is not: declare both lists")
        if members_list is not None and n_validation:
            raise ValueError(
                "declared membership (split.members_list) has no validation samples: set "
                f"split.n_validation=0 (got {n_validation})"
            )
        self.lists = (members_list, nonmembers_list) if members_list is not None else None
        self.root = Path(root) if root is not None else Path(".")
        if max_audited is not None and max_audited < 1:
            raise ValueError(f"max_audited must be >= 1 or null, got {max_audited}")
        self.max_audited = max_audited
        self.dataset = dataset
        self.members_from = members_from
        self.nonmembers_from = nonmembers_from
        self.n_members = n_members
        self.n_nonmembers = n_nonmembers
        self.n_validation = n_validation
        self.seed = seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.manifest_path = Path(manifest_path) if manifest_path is not None else None
        self.prepare = prepare
        self.collate_fn = collate_fn
        self.benchmark = benchmark
        self.population_settings = dict(population or {})
        if not self.population_settings.get("n_models") and self.population_settings.get(
            "model", 0
        ):
            raise ValueError(
                f"split.population.model={self.population_settings['model']} needs "
                "reference.n_models > 0 (model 0 is the only model without references)"
            )
        #: the population and its membership matrix (after :meth:`setup`, when on)
        self.population: Population | None = None
        #: where the population CSV is (after :meth:`setup`, when on)
        self.population_path: Path | None = None
        self._manifest: Manifest | None = None
        self._sets: dict[str, Dataset] = {}

    def prepare_data(self) -> None:
        """Run ``prepare`` (once per node; Lightning calls this before :meth:`setup`)."""
        if self.prepare is not None:
            self.prepare()

    @property
    def manifest(self) -> Manifest:
        """The membership split (available after :meth:`setup`)."""
        if self._manifest is None:
            raise RuntimeError("MembershipDataModule.setup() has not been called yet")
        return self._manifest

    def _draw_split(
        self, member_pool: list[SampleRecord], nonmember_pool: list[SampleRecord]
    ) -> Manifest:
        """The ordinary split of this module's sizes and seed (also a population's pool),
        or the one the lists declare."""
        if self.lists is not None:
            return declared_split(
                member_pool,
                nonmember_pool,
                *self.lists,
                root=self.root,
                members_from=self.members_from,
                nonmembers_from=self.nonmembers_from,
            )
        return make_split(
            member_pool,
            nonmember_pool,
            self.n_members,
            self.n_nonmembers,
            seed=self.seed,
            n_validation=self.n_validation,
        )

    def setup(self, stage: str | None = None) -> None:
        """Draw or reload the split and build the datasets of every role (idempotent)."""
        if self._manifest is not None:
            return
        phases = dict.fromkeys([self.members_from, self.nonmembers_from])
        plain = {phase: self.dataset(phase=phase, augment=False) for phase in phases}
        member_pool = plain[self.members_from].records()
        nonmember_pool = plain[self.nonmembers_from].records()

        if self.population_settings.get("n_models"):
            manifest = self._population_column(member_pool, nonmember_pool)
        elif self.lists is not None:
            # read from the lists every time (no draw to reuse; their hash keys the path)
            manifest = self._draw_split(member_pool, nonmember_pool)
            if self.manifest_path is not None and not self.manifest_path.exists():
                manifest.to_csv(self.manifest_path)
        elif self.manifest_path is not None and self.manifest_path.exists():
            manifest = Manifest.from_csv(self.manifest_path)
            self._check_matches(manifest, member_pool, nonmember_pool)
            # a manifest cached before manifests recorded it: what these settings make it
            manifest.membership = split_membership(
                self.n_members,
                self.n_nonmembers,
                self.members_from != self.nonmembers_from,
                self.n_validation,
            )
            log.info("reusing membership split %s", self.manifest_path)
        else:
            manifest = self._draw_split(member_pool, nonmember_pool)
            if self.manifest_path is not None:
                manifest.to_csv(self.manifest_path)
                log.info("membership split written to %s", self.manifest_path)

        self._sets = {
            "train": self.dataset(phase=self.members_from, augment=True).subset(
                manifest.ids("member")
            ),
            "member": plain[self.members_from].subset(manifest.ids("member")),
            "validation": plain[self.members_from].subset(manifest.ids("validation")),
            "nonmember": plain[self.nonmembers_from].subset(manifest.ids("nonmember")),
        }
        if self.max_audited is not None:
            rng = np.random.default_rng(self.seed)
            for role, phase in (("member", self.members_from), ("nonmember", self.nonmembers_from)):
                ids = manifest.ids(role)
                if len(ids) > self.max_audited:
                    keep = np.sort(rng.choice(len(ids), self.max_audited, replace=False))
                    self._sets[role] = plain[phase].subset([ids[i] for i in keep])
                    log.info(
                        "auditing %d of %d %ss (max_audited)", self.max_audited, len(ids), role
                    )
        self._manifest = manifest

    def _population_column(
        self, member_pool: list[SampleRecord], nonmember_pool: list[SampleRecord]
    ) -> Manifest:
        """The manifest of one model of the population (see ``population``).

        The ordinary split is drawn in memory (deterministic in the seed, so every model
        draws the same one), the membership matrix over its members and non-members is
        written once, and the model's column is the manifest. A stored manifest that
        differs from the recomputed one (data changed under it) is refused.
        """
        settings = self.population_settings
        if self.members_from != self.nonmembers_from:
            # a model's members then span two phases, which one dataset view cannot serve
            raise ValueError(
                "a reference-model population needs members and non-members drawn from one "
                f"phase; got split.members_from={self.members_from!r} and "
                f"split.nonmembers_from={self.nonmembers_from!r}"
            )
        base = self._draw_split(member_pool, nonmember_pool)
        population = Population.draw(
            base,
            n_models=int(settings["n_models"]) + 1,  # the target and its references
            pkeep=float(settings.get("pkeep", 0.5)),
            seed=int(settings.get("seed", self.seed)),
        )
        manifest = population.column(int(settings.get("model", 0)))
        if self.manifest_path is not None:
            folder = self.manifest_path.parent
            self.population_path = folder / f"population-{population.sha256()[:16]}.csv"
            if not self.population_path.exists():
                population.to_csv(self.population_path)
                log.info("population matrix written to %s", self.population_path)
            if self.manifest_path.exists():
                stored = Manifest.from_csv(self.manifest_path)
                if stored != manifest:
                    raise ValueError(
                        f"manifest {self.manifest_path} differs from model "
                        f"{settings.get('model', 0)}'s column of the population drawn from "
                        "the data now (data changed?); remove it to redraw"
                    )
            else:
                manifest.to_csv(self.manifest_path)
        self.population = population
        return manifest

    def _check_matches(
        self,
        manifest: Manifest,
        member_pool: list[SampleRecord],
        nonmember_pool: list[SampleRecord],
    ) -> None:
        """Refuse a stored split that the data or the requested sizes no longer match."""
        where = f"manifest {self.manifest_path}"
        expected = {
            "member": self.n_members,
            "nonmember": self.n_nonmembers,
            "validation": self.n_validation,
        }
        for role, n in expected.items():
            if n is not None and len(manifest.ids(role)) != n:
                raise ValueError(
                    f"{where} has {len(manifest.ids(role))} {role} samples, but {n} were "
                    "requested; remove it or point manifest_path elsewhere"
                )
        pools = {
            "member": member_pool,
            "validation": member_pool,
            "nonmember": nonmember_pool,
        }
        for role, pool in pools.items():
            content = {r.sample_id: r.sha256 for r in pool}
            stale = [
                r.sample_id for r in manifest.records(role) if content.get(r.sample_id) != r.sha256
            ]
            if stale:
                shown = ", ".join(stale[:10]) + (" ..." if len(stale) > 10 else "")
                raise ValueError(
                    f"{where} does not match the data: {len(stale)} {role} sample(s) missing "
                    f"or with changed content: {shown}"
                )
        manifest.check_disjoint()

    def _loader(self, role: str, batch_size: int, shuffle: bool) -> DataLoader:
        if not self._sets:
            raise RuntimeError("MembershipDataModule.setup() has not been called yet")
        return DataLoader(
            self._sets[role],
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

    def train_dataloader(self) -> DataLoader:
        """Members with augmentation, shuffled."""
        return self._loader("train", self.batch_size, shuffle=True)

    def member_dataloader(self) -> DataLoader:
        """Members without augmentation, in manifest order."""
        return self._loader("member", self.eval_batch_size, shuffle=False)

    def nonmember_dataloader(self) -> DataLoader:
        """Non-members without augmentation, in manifest order."""
        return self._loader("nonmember", self.eval_batch_size, shuffle=False)

    def role_dataloader(self, role: str, ids: list[str] | None = None) -> DataLoader:
        """Unaugmented loader of one role (``member``, ``nonmember``, ``validation``) in
        manifest order, restricted to ``ids`` when given (e.g. a calibration half)."""
        if not self._sets:
            raise RuntimeError("MembershipDataModule.setup() has not been called yet")
        if role not in ("member", "nonmember", "validation"):
            raise ValueError(f"unknown role {role!r}; expected member, nonmember or validation")
        dataset = self._sets[role]
        if ids is not None:
            known = set(self.manifest.ids(role))
            unknown = [i for i in ids if i not in known]
            if unknown:
                raise ValueError(
                    f"{len(unknown)} id(s) are not {role}s of the split: {unknown[:5]}"
                )
            dataset = dataset.subset(ids)
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            drop_last=False,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
        )

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Lightning's validation loader: the ``validation`` role when the split has one
        (``n_validation > 0``), else an empty list, which makes Lightning skip validation."""
        if self._sets and not len(self._sets["validation"]):
            return []
        return self.validation_dataloader()

    def validation_dataloader(self) -> DataLoader:
        """Validation samples (held out from members and non-members), no augmentation."""
        return self._loader("validation", self.eval_batch_size, shuffle=False)
