"""Download (resumable) and verify a dataset file against its published or first-seen checksum."""

from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from miabench.data_sources.sources import CHUNK, PrepareError, SourceFile
from miabench.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)


def mirrored(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host replaced by ``mirror`` (a site mirror keeping paths)."""
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    return mirror.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def download(url: str, target: Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``target``, resuming a partial ``<target>.part`` with HTTP Range.

    The file appears at ``target`` only when complete (renamed from ``.part``). A server that
    ignores the Range request (answers 200) is read from the start again.

    Raises:
        PrepareError: naming the URL on an HTTP or network error.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "miabench-prepare-data"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the part file is already complete
            part.replace(target)
            return target
        raise PrepareError(f"download of {url} failed: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise PrepareError(
            f"download of {url} failed ({err}); without internet, download it elsewhere and "
            "pass it with --archive"
        ) from err
    with response:
        resumed = have and response.status == 206
        if have and not resumed:
            log.info("%s: the server does not resume; downloading from the start", url)
        total = response.headers.get("Content-Length")
        log.info(
            "downloading %s%s%s", url, f" ({int(total) / 1e6:.1f} MB)" if total else "",
            f", resuming at {have / 1e6:.1f} MB" if resumed else "",
        )  # fmt: skip
        try:
            with part.open("ab" if resumed else "wb") as out:
                shutil.copyfileobj(response, out, CHUNK)
        except OSError as err:
            raise PrepareError(
                f"download of {url} interrupted ({err}); run again to resume from {part}"
            ) from err
    part.replace(target)
    return target


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file (``md5`` or ``sha256``), read in chunks."""
    h = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, source: SourceFile, ledger: Path) -> str:
    """Check ``path`` against the published checksum, or the one recorded at first download.

    Returns:
        how it was checked (for the log).

    Raises:
        PrepareError: on a mismatch, naming the file and both digests.
    """
    published = source.published
    if published is not None:
        algorithm, expected = published
        got = file_digest(path, algorithm)
        if got != expected:
            raise PrepareError(
                f"{path}: {algorithm} {got} does not match the published {expected} for "
                f"{source.filename}; the file is corrupt or not the published one (delete it "
                "and run again, or pass the right file with --archive)"
            )
        return f"{algorithm} matches the published checksum"
    got = file_digest(path, "sha256")
    recorded = read_json(ledger) if ledger.is_file() else {}
    if source.filename in recorded:
        if recorded[source.filename] != got:
            raise PrepareError(
                f"{path}: sha256 {got} differs from {recorded[source.filename]}, recorded in "
                f"{ledger} when {source.filename} was first prepared; no checksum is "
                "published for it, so the first download is the reference (delete that entry "
                "if the publisher changed the file)"
            )
        return f"sha256 matches the one recorded in {ledger}"
    atomic_write_json(ledger, {**recorded, source.filename: got})
    return f"no checksum is published: recorded sha256 {got} of this first download in {ledger}"
