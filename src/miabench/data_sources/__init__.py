"""Public datasets one command away: download (resumable), verify, unpack in the readers' layout.

Each dataset is a YAML file in ``registry/`` (``_target_: miabench.data_sources.DatasetSource``):
where its files come from, their published checksums, what the archive must contain and where
it goes under the data folder. ``python -m miabench.prepare_data <name>`` runs it.

Checksums: a file whose publisher gives a checksum is verified against it (``md5`` or
``sha256``). Where none is published, the SHA-256 of the first download is recorded in
``<data_dir>/downloads/checksums.json`` and later downloads must match it (trust on first
use); this is said when it happens.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from miabench.utils.io import atomic_write, atomic_write_json, read_json

log = logging.getLogger(__name__)

REGISTRY = Path(__file__).parent / "registry"
#: Bytes per read while downloading and hashing.
CHUNK = 1 << 20


class PrepareError(RuntimeError):
    """A download, checksum or archive that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a dataset.

    Args:
        filename: name of the downloaded file (and of the file a user passes with --archive).
        url: where to download it; None when it needs a login or a browser (--archive only).
        md5: checksum published for it (MD5), if any.
        sha256: checksum published for it (SHA-256), if any.
        expect: glob patterns (``/``-separated, relative to the dataset root after unpacking)
            that the file must provide; an archive is recognised and checked by them.
        dest: folder under the dataset root where the content goes (``.`` = the root).
        unpack: False for a plain file (e.g. LFW's pairs.txt), copied to ``dest/filename``.
    """

    filename: str
    url: str | None = None
    md5: str | None = None
    sha256: str | None = None
    expect: tuple[str, ...] = ()
    dest: str = "."
    unpack: bool = True

    @property
    def published(self) -> tuple[str, str] | None:
        """``(algorithm, hex digest)`` of the published checksum, if any."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.md5:
            return "md5", self.md5.lower()
        return None


@dataclass
class DatasetSource:
    """A dataset: its files and where they go.

    Args:
        name: registry name (``python -m miabench.prepare_data <name>``).
        root: dataset folder relative to the data folder (the data configs' default ``root``).
        files: the :class:`SourceFile` fields of each file.
        homepage: where to read the licence and, for login-only files, download them.
        data_configs: the ``data=`` configs that read this layout (printed afterwards).
        note: one line shown after preparing (e.g. which overrides to use).
    """

    name: str
    root: str
    files: Sequence[Mapping[str, Any]]
    homepage: str = ""
    data_configs: Sequence[str] = ()
    note: str = ""
    sources: list[SourceFile] = field(init=False)

    def __post_init__(self) -> None:
        self.sources = []
        for spec in self.files:
            spec = dict(spec)
            spec["expect"] = tuple(spec.get("expect") or ())
            self.sources.append(SourceFile(**spec))

    @property
    def needs_archive(self) -> bool:
        """Whether some file cannot be downloaded here (login or browser needed)."""
        return any(s.url is None for s in self.sources)


def available() -> list[str]:
    """Names of the registered datasets."""
    return sorted(p.stem for p in REGISTRY.glob("*.yaml"))


def load_source(name: str, registry: str | os.PathLike = REGISTRY) -> DatasetSource:
    """The registered dataset ``name``.

    Raises:
        KeyError: naming the registered datasets when ``name`` is not one.
    """
    from hydra.utils import instantiate  # noqa: PLC0415 - keeps `--help` light

    path = Path(registry) / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(available())}")
    return instantiate(OmegaConf.load(path), _convert_="all")


# --- download ------------------------------------------------------------------------------


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


# --- archives ------------------------------------------------------------------------------


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


# --- the whole preparation ------------------------------------------------------------------


def _done_marker(downloads: Path, dataset: DatasetSource, source: SourceFile) -> Path:
    # beside the downloads, not in the dataset folder, whose readers list its sub-folders
    return downloads / "prepared" / f"{dataset.name}--{source.filename}.json"


def prepare(
    dataset: DatasetSource,
    data_dir: str | os.PathLike,
    archives: Sequence[str | os.PathLike] = (),
    root: str | os.PathLike | None = None,
    mirror: str | None = None,
) -> Path:
    """Download (or take from ``archives``), verify and unpack every file of ``dataset``.

    Args:
        dataset: the registry entry.
        data_dir: the data folder (``paths.data_dir``); downloads go to ``data_dir/downloads``.
        archives: files the user downloaded (login-only datasets, or no internet here).
        root: the dataset folder; default ``data_dir/dataset.root``.
        mirror: a site mirror replacing the scheme and host of every URL.

    Returns:
        The dataset folder.

    Raises:
        PrepareError: a failed download, a checksum mismatch, a wrong archive, or a
            login-only file not given with ``--archive``.
    """
    data_dir = Path(data_dir)
    root = Path(root) if root is not None else data_dir / dataset.root
    downloads = data_dir / "downloads"
    ledger = downloads / "checksums.json"
    given: dict[str, Path] = {}
    for archive in archives:
        archive = Path(archive).expanduser()
        if not archive.is_file():
            raise PrepareError(f"--archive {archive}: no such file")
        source = match_archive(archive, dataset.sources)
        given[source.filename] = archive
    for source in dataset.sources:
        marker = _done_marker(downloads, dataset, source)
        done = read_json(marker) if marker.is_file() else {}
        if source.filename not in given and done.get("root") == str(root.resolve()):
            log.info("%s: already unpacked in %s", source.filename, root)
            continue
        if source.filename in given:
            path = given[source.filename]
        elif source.url is not None:
            path = downloads / source.filename
            if not path.is_file():
                download(mirrored(source.url, mirror), path)
        else:
            raise PrepareError(
                f"{dataset.name}: {source.filename} cannot be downloaded without a login or a "
                f"browser; get it from {dataset.homepage or 'the publisher'} and run "
                f"`python -m miabench.prepare_data {dataset.name} --archive "
                f"/path/to/{source.filename}`"
            )
        try:
            how = verify(path, source, ledger)
        except PrepareError:
            if source.filename not in given:
                # a bad download is removed so the next run fetches it afresh
                path.unlink(missing_ok=True)
            raise
        log.info("%s: %s", source.filename, how)
        print(f"[prepare_data] {source.filename}: {how}")
        count = unpack(path, source, root)
        atomic_write_json(
            marker,
            {"root": str(root.resolve()), "file": str(path), "files": count, "check": how},
        )
        print(f"[prepare_data] {source.filename}: {count} file(s) → {root / source.dest}")
    return root
