"""The population of a reference-model run: K models and who trains on what.

The members and non-members of an ordinary split form the population; a seeded samples x
models matrix (:func:`membership_matrix`) says which model (0 the target, 1.. the references)
trains on which sample, and each column is an ordinary membership manifest
(:meth:`Population.column`). Duplicate contents are dealt whole, as in the split, so no model
trains on a copy of a sample it is attacked on as a non-member.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from miabench.data.membership import (
    DuplicateContentError,
    Manifest,
    ManifestRow,
    SampleRecord,
    _groups,
    _unique,
)
from miabench.utils.io import atomic_write_text

#: First columns of a population CSV; one ``model_<k>`` column (1 = IN) per model follows.
POPULATION_COLUMNS: tuple[str, ...] = ("sample_id", "path", "sha256")


def _deal(groups: list[list[SampleRecord]], n_in: int, rng: np.random.Generator) -> set[str]:
    """Ids of a random choice of ``n_in`` samples, dealt as whole duplicate-content groups.

    As :func:`~miabench.data.membership._fill` deals roles: larger groups first (random order
    within a size), each to IN or OUT with probability proportional to the room left there, so
    duplicated content is not steered to either side and the singletons make the count exact.
    Unlike ``_fill`` every sample must be placed: a group too large for the room of both sides
    goes to the side with more room (the count then misses by less than one group).
    """
    room = {True: n_in, False: sum(len(g) for g in groups) - n_in}
    order = [groups[int(i)] for i in rng.permutation(len(groups))]
    order.sort(key=len, reverse=True)  # stable: random order within each size
    chosen: set[str] = set()
    for group in order:
        fits = [side for side in (True, False) if room[side] >= len(group)]
        if fits:
            weights = np.array([room[side] for side in fits], dtype=float)
            side = fits[int(rng.choice(len(fits), p=weights / weights.sum()))]
        else:
            side = max(room, key=lambda key: room[key])
        room[side] -= len(group)
        if side:
            chosen.update(r.sample_id for r in group)
    return chosen


def membership_matrix(
    records: Sequence[SampleRecord], n_models: int, pkeep: float, seed: int
) -> np.ndarray:
    """Seeded samples x models membership matrix: model 0 the target, 1.. the references.

    Every model trains on ``round(pkeep * N)`` samples (exactly, unless duplicate-content
    groups make it impossible), a seeded random choice (:func:`_deal`). With
    ``pkeep`` 0.5 the references come in complementary pairs (1, 2), (3, 4), ...: each pair
    splits the population into a random half and its complement, so every sample is IN for
    exactly one model of each pair (the references are balanced per sample), while the
    target (and an odd last reference) draws its half independently. Any other ``pkeep``
    draws every column independently.

    Why not LiRA's matrix (an independent permutation per sample, IN for the first
    ``pkeep * K`` models, target included): with every row summing to the same count, a
    model's references hold one IN fewer for exactly the samples that model trained on, so
    the count of IN references alone reveals the target's membership; on never-trained
    models (5 random initialisations, 48 samples) leave-one-out dense offline LiRA then scored
    AUC 0.72 and online LiRA 0.43 from counts alone. Here a target's references (leaving out
    its pair partner, :meth:`Population.references_of`) are drawn independently of it. Its
    columns also had binomial sizes (11 to 23 on that population): with a fixed epoch count a
    smaller model fits its samples more, a model-level shift LiRA reads as membership.

    Samples with the same content hash share their row (whole duplicate groups are dealt),
    so no model trains on a copy of a sample it is attacked on as a non-member.

    Args:
        records: the population (any order; the matrix rows follow it).
        n_models: number of models (columns), the target included.
        pkeep: share of the population each model trains on.
        seed: seed of the draw; rows do not depend on the order of ``records``.

    Returns:
        (len(records), n_models) bool array, True = the model trains on the sample.

    Raises:
        ValueError: fewer than two models, or a ``pkeep`` that leaves a model without
            members or non-members.
    """
    if not records:
        raise ValueError("the population is empty: the split drew no members or non-members")
    if n_models < 2:
        raise ValueError(
            f"a population needs the target and at least one reference, got {n_models}"
        )
    records_u = _unique(records, "population")
    n_in = int(round(pkeep * len(records_u)))
    if not 1 <= n_in <= len(records_u) - 1:
        raise ValueError(
            f"pkeep={pkeep} of {len(records_u)} samples leaves a model without members or "
            "non-members; each model needs both (reference.pkeep)"
        )
    groups = _groups(records_u)
    rng = np.random.default_rng(seed)
    column = {r.sample_id: i for i, r in enumerate(records)}
    matrix = np.zeros((len(records), n_models), dtype=bool)

    def draw() -> np.ndarray:
        ids = _deal(groups, n_in, rng)
        drawn = np.zeros(len(records), dtype=bool)
        drawn[[column[sid] for sid in column if sid in ids]] = True
        return drawn

    matrix[:, 0] = draw()
    model = 1
    while model < n_models:
        matrix[:, model] = draw()
        if pkeep == 0.5 and model + 1 < n_models:
            matrix[:, model + 1] = ~matrix[:, model]
            model += 1
        model += 1
    return matrix


@dataclass(frozen=True)
class Population:
    """The population of a reference-model run and who trains on what.

    Attributes:
        records: the population, sorted by sample id (members and non-members of the
            ordinary split; its validation samples are not part of it).
        matrix: (N, K) bool, column ``k`` = the samples model ``k`` trains on; model 0 is
            the target, models 1..K-1 the references (see :func:`membership_matrix`).
        validation: validation samples shared by every model (held out from all of them).
    """

    records: tuple[SampleRecord, ...]
    matrix: np.ndarray
    validation: tuple[SampleRecord, ...] = ()

    def __post_init__(self) -> None:
        if self.matrix.shape[0] != len(self.records) or self.matrix.ndim != 2:
            raise ValueError(
                f"membership matrix of shape {self.matrix.shape} for {len(self.records)} samples"
            )

    @classmethod
    def draw(
        cls,
        base: Manifest,
        n_models: int,
        pkeep: float,
        seed: int,
    ) -> Population:
        """Population = members and non-members of ``base``, with a fresh matrix.

        Args:
            base: the ordinary split whose members and non-members form the population.
            n_models: number of models, the target included.
            pkeep: share of the models each sample trains.
            seed: seed of the matrix.
        """
        records = sorted(
            base.records("member") + base.records("nonmember"), key=lambda r: r.sample_id
        )
        matrix = membership_matrix(records, n_models, pkeep, seed)
        population = cls(tuple(records), matrix, tuple(base.records("validation")))
        population.check_disjoint()
        return population

    @property
    def n_models(self) -> int:
        """Number of models (columns), the target included."""
        return int(self.matrix.shape[1])

    def partners(self) -> list[int]:
        """Each model's pair partner (the model trained on the complement), or -1.

        Read off the matrix: references ``2j - 1`` and ``2j`` whose columns are complements.
        """
        partner = [-1] * self.n_models
        for model in range(1, self.n_models - 1, 2):
            if (self.matrix[:, model] == ~self.matrix[:, model + 1]).all():
                partner[model], partner[model + 1] = model + 1, model
        return partner

    def references_of(self, model: int) -> np.ndarray:
        """The models that serve as ``model``'s references: all others but its partner.

        A partner's membership is the complement of the model's own, so it would tell the
        attack the answer; every other model's membership is drawn independently.
        """
        partner = self.partners()[model]
        return np.array([j for j in range(self.n_models) if j not in (model, partner)])

    @property
    def sample_ids(self) -> list[str]:
        """Ids of the population, in row order."""
        return [r.sample_id for r in self.records]

    def column(self, model: int) -> Manifest:
        """Membership manifest of ``model``: IN samples are members, OUT non-members.

        Raises:
            ValueError: ``model`` outside ``0..K-1``.
        """
        if not 0 <= model < self.n_models:
            raise ValueError(
                f"model {model} is not in the population's 0..{self.n_models - 1} "
                "(split.population.model must be below reference.n_models + 1)"
            )
        rows = [
            ManifestRow(r.sample_id, r.path, r.sha256, "member" if inside else "nonmember")
            for r, inside in zip(self.records, self.matrix[:, model], strict=True)
        ]
        rows += [ManifestRow(r.sample_id, r.path, r.sha256, "validation") for r in self.validation]
        return Manifest(rows)

    def check_disjoint(self) -> None:
        """Every model's members and non-members are disjoint by content (and id).

        Raises:
            DuplicateContentError: naming the model and the offending samples.
        """
        for model in range(self.n_models):
            try:
                self.column(model).check_disjoint()
            except DuplicateContentError as err:
                raise DuplicateContentError(f"model {model}: {err}") from err

    def sha256(self) -> str:
        """Hash of the population and its matrix (ids, content hashes, IN bits; not paths)."""
        h = hashlib.sha256()
        for record, row in sorted(
            zip(self.records, self.matrix, strict=True), key=lambda x: x[0].sample_id
        ):
            bits = "".join("1" if b else "0" for b in row)
            h.update(f"{record.sample_id}\t{record.sha256}\t{bits}\n".encode())
        for record in sorted(self.validation, key=lambda r: r.sample_id):
            h.update(f"{record.sample_id}\t{record.sha256}\tvalidation\n".encode())
        return h.hexdigest()

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the population (one row per sample, ``model_<k>`` = 1 when IN) atomically.

        Validation samples are listed too, with every model column 0 (no model trains on
        them) and ``validation`` = 1.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        models = [f"model_{k}" for k in range(self.n_models)]
        writer.writerow([*POPULATION_COLUMNS, *models, "validation"])
        for record, row in zip(self.records, self.matrix, strict=True):
            writer.writerow([record.sample_id, record.path, record.sha256, *row.astype(int), 0])
        for record in self.validation:
            writer.writerow([record.sample_id, record.path, record.sha256, *[0] * len(models), 1])
        return atomic_write_text(path, buffer.getvalue())

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> Population:
        """Read a population written by :meth:`to_csv`.

        Raises:
            ValueError: naming the file, when columns are missing or a flag is not 0/1.
        """
        path = Path(path)
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            names = reader.fieldnames or []
            models = [c for c in names if c.startswith("model_")]
            if [c for c in POPULATION_COLUMNS if c not in names] or not models:
                raise ValueError(
                    f"{path}: a population needs columns {list(POPULATION_COLUMNS)}, "
                    f"model_0.. and validation; found {names}"
                )
            records, rows, validation = [], [], []
            for line, raw in enumerate(reader, start=2):
                flags = [raw[c] for c in [*models, "validation"]]
                if any(f not in ("0", "1") for f in flags):
                    raise ValueError(f"{path}, line {line}: membership flags must be 0 or 1")
                record = SampleRecord(raw["sample_id"], raw["path"], raw["sha256"])
                if raw["validation"] == "1":
                    validation.append(record)
                else:
                    records.append(record)
                    rows.append([f == "1" for f in flags[:-1]])
        matrix = np.array(rows, dtype=bool).reshape(len(records), len(models))
        return cls(tuple(records), matrix, tuple(validation))
