"""Unpack an archive safely and recognise which dataset file it is by its content."""

from __future__ import annotations

import fnmatch
import shutil
import tarfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from miabench.data_sources.sources import CHUNK, PrepareError, SourceFile
from miabench.utils.io import atomic_write


def _names(path: Path) -> list[str]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return [n for n in zf.namelist() if not n.endswith("/")]
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            return [m.name for m in tf.getmembers() if m.isfile()]
    raise PrepareError(f"{path} is neither a zip nor a tar archive")


def _safe(name: str, archive: Path) -> str:
    parts = Path(name.replace("\\", "/")).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        raise PrepareError(f"{archive}: refusing the unsafe member path {name!r}")
    return "/".join(p for p in parts if p != ".")


def find_prefix(names: Iterable[str], expect: Sequence[str]) -> str | None:
    """The folder prefix under which every ``expect`` pattern matches some member, or None.

    Archives differ in whether they wrap the content in a top folder (``facades/``,
    ``Kvasir-SEG/``, ``COVID-SemiSeg/Dataset/``); the shortest prefix that fits all
    patterns is taken.
    """
    names = list(names)
    candidates: set[str] = set()
    for name in names:
        pieces = name.split("/")
        for k in range(len(pieces)):
            prefix = "/".join(pieces[:k]) + ("/" if k else "")
            if fnmatch.fnmatchcase(name[len(prefix) :], expect[0]):
                candidates.add(prefix)
    for prefix in sorted(candidates, key=len):
        rest = [n[len(prefix) :] for n in names if n.startswith(prefix)]
        if all(any(fnmatch.fnmatchcase(r, p) for r in rest) for p in expect):
            return prefix
    return None


def _members(path: Path) -> Iterator[tuple[str, Any]]:
    """``(name, open-callable)`` for every regular file of a zip or tar archive."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: zf.open(info)
    else:
        with tarfile.open(path) as tf:
            for member in tf:
                if member.isfile():
                    yield member.name, lambda member=member: tf.extractfile(member)


def unpack(path: Path, source: SourceFile, root: Path) -> int:
    """Unpack the members of ``path`` under the recognised prefix into ``root/source.dest``.

    Each file is written atomically, so an interrupted unpack leaves whole files only and a
    rerun completes it. Returns the number of files written.

    Raises:
        PrepareError: when the archive lacks what ``source.expect`` requires.
    """
    dest = root / source.dest
    if not source.unpack:
        atomic_write(dest / source.filename, lambda tmp: shutil.copyfile(path, tmp))
        return 1
    prefix = find_prefix([_safe(n, path) for n in _names(path)], source.expect)
    if prefix is None:
        raise PrepareError(mismatch_message(path, [source]))
    count = 0
    for name, opener in _members(path):
        name = _safe(name, path)
        if not name.startswith(prefix):
            continue
        out = dest / name[len(prefix) :]

        def write(tmp: str, opener: Any = opener) -> None:
            with opener() as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)

        atomic_write(out, write)
        count += 1
    return count


def mismatch_message(path: Path, sources: Sequence[SourceFile]) -> str:
    """Why ``path`` is refused: what each candidate file should contain."""
    wanted = "; ".join(f"{s.filename}: {', '.join(s.expect)}" for s in sources)
    return (
        f"{path} is not an archive this dataset expects: it does not contain the files of "
        f"any of [{wanted}] (patterns relative to the dataset root, under any top folder)"
    )


def match_archive(path: Path, sources: Sequence[SourceFile]) -> SourceFile:
    """The file entry a user-supplied archive provides, recognised by its content.

    Raises:
        PrepareError: when it provides none of them.
    """
    plain = [s for s in sources if not s.unpack and s.filename == path.name]
    if plain:
        return plain[0]
    archives = [s for s in sources if s.unpack]
    try:
        names = [_safe(n, path) for n in _names(path)]
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as err:
        raise PrepareError(f"{path}: unreadable archive ({err})") from err
    for source in archives:
        if find_prefix(names, source.expect) is not None:
            return source
    raise PrepareError(mismatch_message(path, archives))
