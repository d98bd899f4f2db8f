"""Membership splits: which samples a victim trains on, which it never sees, and a manifest.

A membership inference benchmark is only meaningful when a non-member is truly unseen: an
exact copy of a member (same decoded pixels under another file name) would make the attack
look better than it is. Samples therefore carry a content hash, duplicate contents are kept
on one side of the split, and :meth:`Manifest.check_disjoint` refuses a split that mixes
them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from miabench.utils.io import atomic_write_text

log = logging.getLogger(__name__)

#: Roles a sample can have in a manifest, in the order rows are written.
ROLES: tuple[str, ...] = ("member", "nonmember", "validation")
COLUMNS: tuple[str, ...] = ("sample_id", "path", "sha256", "role")


class DuplicateContentError(ValueError):
    """A sample's content (or id) is on both sides of a membership split."""


@dataclass(frozen=True)
class SampleRecord:
    """One sample of a dataset as the membership split sees it.

    Attributes:
        sample_id: id unique inside the dataset (e.g. ``train/12.jpg``).
        path: where the sample lives, for people reading a manifest.
        sha256: hash of the decoded content (``utils.hashing.sha256_array``).
    """

    sample_id: str
    path: str
    sha256: str


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row: a sample and its role."""

    sample_id: str
    path: str
    sha256: str
    role: str

    @property
    def record(self) -> SampleRecord:
        return SampleRecord(self.sample_id, self.path, self.sha256)


class Manifest:
    """The membership split of one victim: one row per sample with its role."""

    def __init__(self, rows: Iterable[ManifestRow]) -> None:
        rows = list(rows)
        for row in rows:
            if row.role not in ROLES:
                raise ValueError(f"sample {row.sample_id!r}: role {row.role!r} not in {ROLES}")
        # Rows are kept sorted so the CSV and the id lists do not depend on draw order.
        self.rows: list[ManifestRow] = sorted(
            rows, key=lambda r: (ROLES.index(r.role), r.sample_id)
        )

    def __len__(self) -> int:
        return len(self.rows)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and self.rows == other.rows

    def __repr__(self) -> str:
        counts = ", ".join(f"{role}={len(self.ids(role))}" for role in ROLES)
        return f"Manifest({counts}, sha256={self.sha256()[:12]})"

    def ids(self, role: str) -> list[str]:
        """Sample ids with ``role``, sorted."""
        return [r.sample_id for r in self.records(role)]

    def records(self, role: str) -> list[SampleRecord]:
        """Records of the samples with ``role``, sorted by sample id."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} not in {ROLES}")
        return [r.record for r in self.rows if r.role == role]

    def sha256(self) -> str:
        """Hash of the split: sorted (sample_id, content hash, role) rows.

        ``path`` is left out on purpose: the same split of the same data stored in another
        folder must give the same hash, since this hash enters the victim cache key.
        """
        h = hashlib.sha256()
        for row in sorted(self.rows, key=lambda r: (r.sample_id, r.role, r.sha256)):
            h.update(f"{row.sample_id}\t{row.sha256}\t{row.role}\n".encode())
        return h.hexdigest()

    def check_disjoint(self) -> None:
        """Refuse a split whose roles share a sample id or a content hash.

        Non-members and validation samples are checked against each other too: selecting a
        checkpoint on a non-member's content would tune the victim to the non-members.

        Raises:
            DuplicateContentError: naming the offending sample ids.
        """
        roles_of_id: dict[str, set[str]] = {}
        by_hash: dict[str, dict[str, list[str]]] = {}
        for row in self.rows:
            roles_of_id.setdefault(row.sample_id, set()).add(row.role)
            by_hash.setdefault(row.sha256, {}).setdefault(row.role, []).append(row.sample_id)
        problems = [
            f"sample id {sid!r} has roles {sorted(roles)}"
            for sid, roles in roles_of_id.items()
            if len(roles) > 1
        ]
        for digest, roles in by_hash.items():
            if len(roles) > 1:
                where = "; ".join(
                    f"{role}: {', '.join(ids)}" for role, ids in sorted(roles.items())
                )
                problems.append(f"same content (sha256 {digest[:12]}) in {where}")
        if problems:
            shown = "\n  ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise DuplicateContentError(
                f"membership split is not disjoint ({len(problems)} problems):\n  {shown}{more}"
            )

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the manifest as CSV (atomically) and return its path."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows:
            writer.writerow([row.sample_id, row.path, row.sha256, row.role])
        return atomic_write_text(path, buffer.getvalue(), checksum=True)

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> Manifest:
        """Read a manifest written by :meth:`to_csv`.

        Raises:
            FileNotFoundError: the file does not exist.
            ValueError: naming the file, for a missing column or an unknown role.
        """
        path = Path(path)
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(
                    f"{path}: manifest lacks column(s) {missing}; "
                    f"expected {list(COLUMNS)}, found {reader.fieldnames}"
                )
            rows = []
            for line, raw in enumerate(reader, start=2):
                if raw["role"] not in ROLES:
                    raise ValueError(
                        f"{path}, line {line}: role {raw['role']!r} not in {list(ROLES)}"
                    )
                if not raw["sample_id"] or not raw["sha256"]:
                    raise ValueError(f"{path}, line {line}: empty sample_id or sha256")
                rows.append(ManifestRow(raw["sample_id"], raw["path"], raw["sha256"], raw["role"]))
        return cls(rows)


def _unique(pool: Sequence[SampleRecord], name: str) -> list[SampleRecord]:
    """Drop repeated records; the same id with two contents is a broken dataset."""
    seen: dict[str, SampleRecord] = {}
    for record in pool:
        previous = seen.setdefault(record.sample_id, record)
        if previous.sha256 != record.sha256:
            raise ValueError(
                f"{name} pool lists sample {record.sample_id!r} twice with different content"
            )
    return list(seen.values())


def _groups(pool: Sequence[SampleRecord]) -> list[list[SampleRecord]]:
    """Samples grouped by content hash, in an order independent of the pool's order."""
    by_hash: dict[str, list[SampleRecord]] = {}
    for record in pool:
        by_hash.setdefault(record.sha256, []).append(record)
    groups = [sorted(g, key=lambda r: r.sample_id) for g in by_hash.values()]
    return sorted(groups, key=lambda g: g[0].sample_id)


def _fill(
    groups: list[list[SampleRecord]],
    quotas: list[tuple[str, int | None]],
    rng: np.random.Generator,
) -> dict[str, list[SampleRecord]]:
    """Deal whole duplicate-content groups into roles at random.

    Each group goes to a role with room for all of it, chosen with probability proportional
    to the room left (what drawing single samples without replacement would do), so
    duplicated content is not steered towards any role. Larger groups are dealt first, in
    random order, which leaves the singletons to fill every role exactly. A role with quota
    ``None`` takes whatever the sized roles leave; otherwise the leftovers stay unused.
    """
    total = sum(len(g) for g in groups)
    sized = sum(n for _, n in quotas if n is not None)
    capacity: dict[str | None, int] = {
        role: total - sized if n is None else n for role, n in quotas
    }
    if all(n is not None for _, n in quotas):
        capacity[None] = total - sized  # leftovers
    drawn: dict[str | None, list[SampleRecord]] = {role: [] for role in capacity}

    order = [groups[int(i)] for i in rng.permutation(len(groups))]
    order.sort(key=len, reverse=True)  # stable: random order within each size
    for group in order:
        roles = [r for r in capacity if capacity[r] - len(drawn[r]) >= len(group)]
        if not roles:
            # A group too large for any role's room; it can only be left out.
            continue
        room = np.array([capacity[r] - len(drawn[r]) for r in roles], dtype=float)
        role = roles[int(rng.choice(len(roles), p=room / room.sum()))]
        drawn[role].extend(group)

    for role, n in quotas:
        if n is not None and len(drawn[role]) != n:
            # Only reachable when duplicate groups are too large to make the counts add up.
            raise ValueError(
                f"could not draw exactly {n} {role} samples (got {len(drawn[role])}): "
                "duplicate-content groups are drawn whole and do not add up; "
                "ask for fewer samples"
            )
    return {role: sorted(drawn[role], key=lambda r: r.sample_id) for role, _ in quotas}


def _check_count(n: int | None, name: str) -> None:
    if n is not None and n < 0:
        raise ValueError(f"{name} must be >= 0 or None, got {n}")


def make_split(
    member_pool: Sequence[SampleRecord],
    nonmember_pool: Sequence[SampleRecord],
    n_members: int | None,
    n_nonmembers: int | None,
    seed: int,
    n_validation: int = 0,
) -> Manifest:
    """Draw a membership split whose members never share content with the other roles.

    Members and validation samples come from ``member_pool``; non-members from
    ``nonmember_pool`` minus anything drawn already and minus any sample with the content
    of a drawn member or validation sample. Both pools may be the same list (one split of
    the data) or different lists (e.g. train vs test).

    Args:
        member_pool: candidates for members and validation samples.
        nonmember_pool: candidates for non-members.
        n_members: number of members; ``None`` takes all of the member pool not reserved for
            validation (not allowed when the pools overlap, as nothing would be left).
        n_nonmembers: number of non-members; ``None`` takes all that remain.
        seed: seed of the draw (``numpy.random.default_rng``).
        n_validation: held-out samples for early stopping, from the member pool's remainder.

    Returns:
        The manifest, already checked with :meth:`Manifest.check_disjoint`.

    Raises:
        ValueError: too few samples for the requested sizes (says how many are available).
    """
    if n_validation is None:
        raise ValueError("n_validation must be an integer >= 0, not None")
    for n, name in (
        (n_members, "n_members"),
        (n_nonmembers, "n_nonmembers"),
        (n_validation, "n_validation"),
    ):
        _check_count(n, name)
    member_pool = _unique(member_pool, "member")
    nonmember_pool = _unique(nonmember_pool, "non-member")
    member_ids = {r.sample_id for r in member_pool}
    overlap = any(r.sample_id in member_ids for r in nonmember_pool)
    if n_members is None and overlap:
        raise ValueError(
            "members and non-members are drawn from the same pool, so n_members cannot be "
            "None (all): set n_members"
        )

    rng = np.random.default_rng(seed)
    asked = (n_members or 0) + n_validation
    if asked > len(member_pool):
        raise ValueError(
            f"asked for {n_members} members + {n_validation} validation samples "
            f"= {asked}, but the member pool has only {len(member_pool)} samples"
        )
    quotas: list[tuple[str, int | None]] = [("member", n_members), ("validation", n_validation)]
    drawn = _fill(_groups(member_pool), quotas, rng)

    used = drawn["member"] + drawn["validation"]
    used_ids = {r.sample_id for r in used}
    used_hashes = {r.sha256 for r in used}
    candidates = [r for r in nonmember_pool if r.sample_id not in used_ids]
    duplicates = [r for r in candidates if r.sha256 in used_hashes]
    if duplicates:
        log.info(
            "dropped %d non-member candidate(s) whose content duplicates a member or "
            "validation sample (e.g. %s)",
            len(duplicates),
            duplicates[0].sample_id,
        )
    candidates = [r for r in candidates if r.sha256 not in used_hashes]
    if n_nonmembers is not None and n_nonmembers > len(candidates):
        raise ValueError(
            f"asked for {n_nonmembers} non-members, but only {len(candidates)} are available "
            f"(non-member pool of {len(nonmember_pool)}, minus "
            f"{len(nonmember_pool) - len(candidates) - len(duplicates)} drawn as members or "
            f"validation, minus {len(duplicates)} duplicates of their content)"
        )
    drawn.update(_fill(_groups(candidates), [("nonmember", n_nonmembers)], rng))

    manifest = Manifest(
        ManifestRow(r.sample_id, r.path, r.sha256, role)
        for role, records in drawn.items()
        for r in records
    )
    manifest.check_disjoint()
    return manifest


#: First columns of a population CSV; one ``model_<k>`` column (1 = IN) per model follows.
POPULATION_COLUMNS: tuple[str, ...] = ("sample_id", "path", "sha256")


def _deal(groups: list[list[SampleRecord]], n_in: int, rng: np.random.Generator) -> set[str]:
    """Ids of a random choice of ``n_in`` samples, dealt as whole duplicate-content groups.

    As :func:`_fill` deals roles: larger groups first (random order within a size), each to
    IN or OUT with probability proportional to the room left there, so duplicated content is
    not steered to either side and the singletons make the count exact. Unlike ``_fill``
    every sample must be placed: a group too large for the room of both sides goes to the
    side with more room (the count then misses by less than one group).
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
