"""Membership splits: which samples a victim trains on, which it never sees, and a manifest.

A membership inference benchmark is only meaningful when a non-member is truly unseen: an
exact copy of a member (same decoded pixels under another file name) would make the attack
look better than it is. Samples therefore carry a content hash, duplicate contents are kept
on one side of the split, and :meth:`Manifest.check_disjoint` refuses a split that mixes
them. The population of a reference-model run (who of K models trains on what) is in
:mod:`miabench.data.population`.
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
#: how a split came about: drawn at random (:func:`make_split`) or declared by the user
#: (published train/test split, or lists: :mod:`miabench.data.declared`); written as the
#: manifest's optional last column, absent (``drawn``) in manifests written before it existed
MEMBERSHIP: tuple[str, ...] = ("drawn", "declared")


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
    """The membership split of one victim: one row per sample with its role.

    ``membership`` says whether the split was ``drawn`` or ``declared`` (:data:`MEMBERSHIP`);
    it is recorded, not hashed: the same rows are the same split, and the same victim.
    """

    def __init__(self, rows: Iterable[ManifestRow], membership: str = "drawn") -> None:
        if membership not in MEMBERSHIP:
            raise ValueError(f"membership {membership!r} not in {MEMBERSHIP}")
        self.membership = membership
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
        writer.writerow([*COLUMNS, "membership"])
        for row in self.rows:
            writer.writerow([row.sample_id, row.path, row.sha256, row.role, self.membership])
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
            rows, kinds = [], set()
            for line, raw in enumerate(reader, start=2):
                kind = raw.get("membership") or "drawn"
                if kind not in MEMBERSHIP:
                    raise ValueError(
                        f"{path}, line {line}: membership {kind!r} not in {list(MEMBERSHIP)}"
                    )
                kinds.add(kind)
                if raw["role"] not in ROLES:
                    raise ValueError(
                        f"{path}, line {line}: role {raw['role']!r} not in {list(ROLES)}"
                    )
                if not raw["sample_id"] or not raw["sha256"]:
                    raise ValueError(f"{path}, line {line}: empty sample_id or sha256")
                rows.append(ManifestRow(raw["sample_id"], raw["path"], raw["sha256"], raw["role"]))
        if len(kinds) > 1:
            raise ValueError(f"{path}: rows disagree on membership ({sorted(kinds)})")
        return cls(rows, membership=kinds.pop() if kinds else "drawn")


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


def split_membership(
    n_members: int | None, n_nonmembers: int | None, separate_pools: bool, n_validation: int
) -> str:
    """``declared`` when a split takes every sample of two separate pools and holds none
    out: no draw took place, the split is the dataset's own (its published train/test, as
    ``split=paper`` takes it); else ``drawn``."""
    every = n_members is None and n_nonmembers is None and not n_validation
    return "declared" if every and separate_pools else "drawn"


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
        (
            ManifestRow(r.sample_id, r.path, r.sha256, role)
            for role, records in drawn.items()
            for r in records
        ),
        membership=split_membership(n_members, n_nonmembers, not overlap, n_validation),
    )
    manifest.check_disjoint()
    return manifest
