"""Membership the user declares: lists of member and non-member files instead of a draw.

An auditor of a model trained elsewhere knows which images it trained on (a released
model's published train split, or the training set of an in-house model) and which it never
saw. ``split.members_list=FILE`` and ``split.nonmembers_list=FILE`` name two text files, one
sample a line (a path relative to ``data.root``, or the dataset's sample id), and
:func:`declared_split` turns them into an ordinary :class:`~miabench.data.membership.Manifest`
marked ``declared``. Nothing here is random; the lists are checked instead: a missing list, a
line that names no sample, a line listed twice, a sample on both lists or the same content on
both lists (a copy under another name) and an empty list are each an error naming the file
and the line.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from miabench.data.membership import (
    DuplicateContentError,
    Manifest,
    ManifestRow,
    SampleRecord,
)

#: the two ways a manifest's membership comes about (recorded in manifests and results)
DRAWN, DECLARED = "drawn", "declared"


def list_sha256(path: str | os.PathLike) -> str | None:
    """Hash of a list file's bytes (enters the split key), ``None`` when it does not exist."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _normalise(entry: str) -> str:
    """One spelling per path: POSIX separators, no ``./``, no trailing slash."""
    return str(PurePosixPath(entry.replace("\\", "/")))


def _keys(record: SampleRecord, root: Path) -> list[str]:
    """The names a list line may use for ``record``: its path under ``root``, its id."""
    keys = [_normalise(record.sample_id)]
    try:
        relative = os.path.relpath(record.path, root)
    except ValueError:  # another drive (Windows): only the id can match
        return keys
    if not relative.startswith(".."):
        keys.insert(0, _normalise(relative))
    return keys


def read_list(path: str | os.PathLike, key: str) -> list[tuple[int, str]]:
    """``(line number, entry)`` of a list file; blank lines and ``#`` comments are skipped.

    Raises:
        FileNotFoundError: naming the file and the config key that named it.
        ValueError: the list names no sample.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{key}={path}: no such file (expected a text file, one sample a line: a path "
            "relative to data.root or a sample id)"
        )
    entries = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            entries.append((number, line))
    if not entries:
        raise ValueError(f"{key}={path} lists no sample (empty, or only comments)")
    return entries


def _resolve(
    entries: list[tuple[int, str]],
    pool: Sequence[SampleRecord],
    root: Path,
    where: str,
    phase: str,
    phase_key: str,
) -> list[tuple[int, SampleRecord]]:
    """The record of each list line, refusing unknown and repeated samples."""
    index: dict[str, SampleRecord] = {}
    for record in pool:
        for name in _keys(record, root):
            index.setdefault(name, record)
    resolved: list[tuple[int, SampleRecord]] = []
    first_line: dict[str, int] = {}
    for number, entry in entries:
        name = _normalise(os.path.relpath(entry, root) if os.path.isabs(entry) else entry)
        record = index.get(name)
        if record is None:
            raise ValueError(
                f"{where}, line {number}: {entry!r} is not a sample of phase {phase!r} "
                f"({phase_key}) under data.root={root}; expected a path relative to data.root "
                f"(e.g. {next(iter(index), '?')!r}) of a file the dataset reads"
            )
        if record.sample_id in first_line:
            raise ValueError(
                f"{where}, line {number}: {entry!r} is listed again (first on line "
                f"{first_line[record.sample_id]})"
            )
        first_line[record.sample_id] = number
        resolved.append((number, record))
    return resolved


def declared_split(
    member_pool: Sequence[SampleRecord],
    nonmember_pool: Sequence[SampleRecord],
    members_list: str | os.PathLike,
    nonmembers_list: str | os.PathLike,
    root: str | os.PathLike,
    members_from: str = "train",
    nonmembers_from: str = "train",
) -> Manifest:
    """The manifest the two lists declare: every listed sample, no validation samples.

    Args:
        member_pool: records of the phase the members are served from (``members_from``).
        nonmember_pool: records of the non-members' phase.
        members_list: text file of members (``split.members_list``).
        nonmembers_list: text file of non-members (``split.nonmembers_list``).
        root: ``data.root``, against which list lines are read.
        members_from: name of the members' phase, for messages.
        nonmembers_from: name of the non-members' phase, for messages.

    Returns:
        A manifest with ``membership == "declared"``, checked disjoint.

    Raises:
        FileNotFoundError: a list file is missing.
        ValueError: an empty list, a line naming no sample of its phase, a repeated line.
        DuplicateContentError: a sample, or the same content, on both lists (names both
            files and lines).
    """
    root = Path(root)
    sides = {}
    for role, path, pool, phase, key in (
        ("member", members_list, member_pool, members_from, "split.members_list"),
        ("nonmember", nonmembers_list, nonmember_pool, nonmembers_from, "split.nonmembers_list"),
    ):
        entries = read_list(path, key)
        phase_key = f"split.{role}s_from={phase}"
        sides[role] = (path, _resolve(entries, pool, root, f"{key}={path}", phase, phase_key))

    (m_path, members), (n_path, nonmembers) = sides["member"], sides["nonmember"]
    member_ids = {r.sample_id: n for n, r in members}
    member_hashes = {r.sha256: (n, r) for n, r in members}
    for number, record in nonmembers:
        if record.sample_id in member_ids:
            raise DuplicateContentError(
                f"{record.sample_id!r} is declared a member ({m_path}, line "
                f"{member_ids[record.sample_id]}) and a non-member ({n_path}, line {number})"
            )
        if record.sha256 in member_hashes:
            line, twin = member_hashes[record.sha256]
            raise DuplicateContentError(
                f"same content (sha256 {record.sha256[:12]}) on both lists: member "
                f"{twin.sample_id!r} ({m_path}, line {line}) and non-member "
                f"{record.sample_id!r} ({n_path}, line {number}); a non-member must be "
                "unseen, so remove one of them"
            )
    rows = [ManifestRow(r.sample_id, r.path, r.sha256, "member") for _, r in members]
    rows += [ManifestRow(r.sample_id, r.path, r.sha256, "nonmember") for _, r in nonmembers]
    manifest = Manifest(rows, membership=DECLARED)
    manifest.check_disjoint()
    return manifest
