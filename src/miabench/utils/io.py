"""Atomic file writes and verified reads of cached artefacts.

A reader never sees a half-written result, cache entry or manifest (writes go to a temporary
file in the destination folder and are moved into place). Cached artefacts are also written
with a checksum sidecar, ``<file>.sha256`` in ``sha256sum`` format (``sha256sum -c`` checks
it by hand), so a file damaged later (a truncated copy, a flipped bit on a network disk) is
found when it is read, named, and recomputed instead of silently used.

Order of a checksummed write (each step atomic): remove the old sidecar, move the new file
into place, write the new sidecar. A kill between any two steps leaves either a file and its
matching sidecar, or a complete file without a sidecar, never a complete file with a stale
one. A file without a sidecar (written by an older miabench, or by such an interrupted write)
is accepted unverified.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from miabench.utils.hashing import sha256_file

log = logging.getLogger(__name__)

#: Suffix of a checksum sidecar: ``victim.pt`` → ``victim.pt.sha256``.
CHECKSUM_SUFFIX = ".sha256"


class CorruptFileError(ValueError):
    """A cached file is damaged: its content does not match its checksum or cannot be parsed.

    Attributes:
        path: the damaged file.
        fix: what to run or remove to repair it.
    """

    def __init__(self, path: Path, problem: str, fix: str | None = None) -> None:
        self.path = Path(path)
        self.fix = fix or (
            f"remove it and its {CHECKSUM_SUFFIX} sidecar, then rerun the command that wrote it "
            "(`python -m miabench.run_attack` for scores and results, "
            "`python -m miabench.train_victim` for a victim's files)"
        )
        super().__init__(f"{self.path}: damaged cache file ({problem}); {self.fix}")


def checksum_path(path: str | os.PathLike) -> Path:
    """The sidecar holding the SHA-256 of ``path``."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], None], checksum: bool = False
) -> Path:
    """Write a file through ``write(tmp_path)`` and move it into place atomically.

    The temporary file lives in the destination folder so ``os.replace`` never crosses
    file systems (a rename across devices is not atomic).

    Args:
        path: destination.
        write: writes the content to the path it is given.
        checksum: also write ``<path>.sha256`` (see the module docstring), for cached
            artefacts that are read back by a later run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        digest = sha256_file(tmp_path) if checksum else None
        # An old sidecar must never outlive the content it describes.
        checksum_path(path).unlink(missing_ok=True)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    if digest is not None:
        atomic_write(checksum_path(path), lambda p: p.write_text(f"{digest}  {path.name}\n"))
    return path


def atomic_write_text(path: str | os.PathLike, text: str, checksum: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), checksum=checksum)


def atomic_write_json(path: str | os.PathLike, obj: Any, checksum: bool = False) -> Path:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write_text(path, text, checksum=checksum)


def verify(path: str | os.PathLike, fix: str | None = None) -> Path:
    """Check ``path`` against its ``.sha256`` sidecar, when it has one, and return it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CorruptFileError: naming the file, when its content does not match the sidecar.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    sidecar = checksum_path(path)
    if not sidecar.is_file():
        return path
    expected = sidecar.read_text(encoding="utf-8", errors="replace").split()[:1]
    actual = sha256_file(path)
    if expected != [actual]:
        size = path.stat().st_size
        raise CorruptFileError(
            path, f"SHA-256 {actual[:12]}… of its {size} bytes differs from {sidecar.name}", fix
        )
    return path


def read_verified(path: str | os.PathLike, fix: str | None = None) -> Path:
    """``path`` after :func:`verify`: use as ``pd.read_csv(read_verified(path))``."""
    return verify(path, fix)


def verified_exists(path: str | os.PathLike) -> bool:
    """True if ``path`` is a usable cached file; a damaged one is removed so it is recomputed.

    For cache reads of the form "reuse the file if an earlier run finished it": a file whose
    content does not match its sidecar is named in a warning, deleted with its sidecar, and
    False is returned, so the caller computes it again.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        verify(path)
    except CorruptFileError as err:
        log.warning("%s; removing it so it is computed again", err)
        discard(path)
        return False
    return True


def discard(path: str | os.PathLike) -> None:
    """Remove a cached file and its checksum sidecar (missing ones are fine)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def check_torch_archive(path: str | os.PathLike, fix: str | None = None) -> Path:
    """Verify a ``torch.save`` file: its sidecar when present, else its zip CRCs.

    torch's format is a zip archive with a CRC-32 per entry, so a truncated file (no central
    directory) or a flipped bit in a tensor is found without a sidecar too (checkpoints that
    Lightning writes have none). The file is named instead of torch's "PytorchStreamReader
    failed reading zip archive".

    Raises:
        CorruptFileError: naming the file and ``fix``.
    """
    path = verify(path, fix)
    if checksum_path(path).is_file():
        return path
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CorruptFileError(path, f"not a complete torch archive: {err}", fix) from err
    if bad is not None:
        raise CorruptFileError(path, f"entry {bad} fails its CRC check", fix)
    return path


def read_json(path: str | os.PathLike, fix: str | None = None) -> Any:
    """Read a JSON file (checked against its sidecar when it has one).

    Raises:
        CorruptFileError: the content does not match the sidecar.
        ValueError: naming the file, when it is not valid JSON.
    """
    path = verify(path, fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
